"""Payments and receivables (issue 18): a payment matched by reference, an invoice's state
from what was paid against what is due, and the ages of open amounts. The rules are pure;
`apply_payment` and `receivables` take the caller's connection."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from services.billing import finnish
from shared.errors import Rejected
from shared.messaging.events import PaymentReceived


def reference_problem(reference: str) -> str | None:
    text = reference.replace(" ", "").upper()
    return finnish.rf_problem(text) if text.startswith("RF") else finnish.reference_problem(text)


def status(due: Decimal, paid: Decimal) -> str:
    """unpaid, partly_paid, paid or overpaid: what was paid against what is due (after credits)."""
    if paid <= 0:
        return "unpaid" if due > 0 else "paid"
    if paid < due:
        return "partly_paid"
    return "paid" if paid == due else "overpaid"


def age_days(due_date: date | None, today: date) -> int:
    """Days past the due date (negative: not yet due)."""
    return (today - due_date).days if due_date else 0


def bucket(days_overdue: int) -> str:
    if days_overdue <= 0:
        return "not_due"
    return next((name for limit, name in ((30, "1-30"), (60, "31-60"), (90, "61-90")) if days_overdue <= limit),
                "over_90")


async def apply_payment(conn: asyncpg.Connection, payment: PaymentReceived) -> bool:
    """Record a payment once per payment id and match it to the invoice of its reference;
    False for a payment id already recorded (a duplicate changes nothing)."""
    if problem := reference_problem(payment.reference):
        raise Rejected(f"reference: {problem}")
    key = finnish.normalise_reference(payment.reference)
    column = "rf_reference" if key.startswith("RF") else "reference"
    invoice_id = await conn.fetchval(
        f"SELECT invoice_id FROM invoices WHERE {column} = $1 AND kind = 'invoice'", key)
    inserted = await conn.fetchval(
        "INSERT INTO payments (payment_id, reference, amount, paid_on, invoice_id) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id",
        payment.payment_id, key, payment.amount, payment.paid_on, invoice_id)
    return inserted is not None


_SETTLEMENT = """
SELECT i.invoice_id, i.invoice_number, i.customer_id, i.period, i.reference, i.issued_at, i.due_date, i.gross,
       coalesce((SELECT sum(c.gross) FROM invoices c WHERE c.credits = i.invoice_id), 0) AS credited,
       coalesce((SELECT sum(p.amount) FROM payments p WHERE p.invoice_id = i.invoice_id), 0) AS paid
FROM invoices i WHERE i.kind = 'invoice'
"""


def settlement(row: Any, today: date) -> dict[str, Any]:
    due = row["gross"] + row["credited"]  # credit notes are negative
    open_amount = due - row["paid"]
    overdue = age_days(row["due_date"], today)
    return {"invoice_id": str(row["invoice_id"]), "invoice_number": row["invoice_number"],
            "customer_id": str(row["customer_id"]), "period": row["period"], "reference": row["reference"],
            "due_date": row["due_date"].isoformat() if row["due_date"] else None,
            "gross": str(row["gross"]), "credited": str(-row["credited"]), "paid": str(row["paid"]),
            "open": str(open_amount), "status": status(due, row["paid"]),
            "days_overdue": overdue, "age": bucket(overdue)}


async def invoice_settlement(conn: asyncpg.Connection | asyncpg.Pool, invoice_id: Any, today: date
                             ) -> dict[str, Any] | None:
    row = await conn.fetchrow(_SETTLEMENT + " AND i.invoice_id = $1", invoice_id)
    return settlement(row, today) if row else None


NOT_DUE = date(9999, 12, 31)  # sorts an invoice with no due date last


def receivable_key(row: Any) -> tuple[date, Any, Any]:
    return row["due_key"], row["issued_at"], row["invoice_id"]


async def receivables(conn: asyncpg.Connection | asyncpg.Pool, customer_id: Any, limit: int,
                      after: tuple[date, Any, Any] | None = None) -> list[asyncpg.Record]:
    """Invoices with an amount still open (or overpaid), oldest due first (none due last),
    keyset paged by (due date, issue time, invoice id)."""
    return await conn.fetch(
        "SELECT * FROM (SELECT *, coalesce(due_date, $2::date) AS due_key FROM (" + _SETTLEMENT
        + " AND ($1::uuid IS NULL OR i.customer_id = $1)) s WHERE gross + credited - paid <> 0) r"
        " WHERE $3::date IS NULL OR (due_key, issued_at, invoice_id) > ($3, $4::timestamptz, $5::uuid)"
        " ORDER BY due_key, issued_at, invoice_id LIMIT $6",
        customer_id, NOT_DUE, *(after or (None, None, None)), limit)


async def open_total(conn: asyncpg.Connection | asyncpg.Pool, customer_id: Any) -> Decimal:
    """The open amount of every receivable (of one customer, or all)."""
    return await conn.fetchval(
        "SELECT coalesce(sum(gross + credited - paid), 0) FROM (" + _SETTLEMENT
        + " AND ($1::uuid IS NULL OR i.customer_id = $1)) s", customer_id)


async def person_payments(conn: asyncpg.Connection, person_id: Any) -> list[asyncpg.Record]:
    """Payments on invoices of buyers whose contact person is `person_id` (R3 maksutiedot)."""
    return await conn.fetch(
        "SELECT p.payment_id, p.amount, p.paid_on, i.invoice_number, i.customer_id FROM payments p"
        " JOIN invoices i ON i.invoice_id = p.invoice_id"
        " JOIN billing_customers b ON b.customer_id = i.customer_id WHERE b.contact_person_id = $1"
        " ORDER BY p.paid_on, p.payment_id", person_id)
