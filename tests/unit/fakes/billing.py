"""An in-memory stand-in for billing's storage as its handlers see it through `ctx.store` /
`uow.store`: the functions of `services/billing/storage.py` and `services/billing/payments.py`
that the handlers call (the runtime binds both modules), each modelling its SQL. Rows are keyed
by their table's primary key; the integration tests run the real SQL."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.billing import domain, finnish, numbering, payments as payment_rules
from shared.errors import Rejected
from shared.messaging.events import PaymentReceived


@dataclass
class BillingStore:
    periods: dict[str, str] = field(default_factory=dict)  # period → open | closed
    # (customer, meter, usage period, invoice period, dimensions, version_from) → the aggregate's columns
    aggregates: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    # (customer, person, meter, period) → event_count, quantity_sum, pseudonymised
    persons: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    # (customer, meter, period, dimensions, version_from, value) → the invoice period of its first sighting
    unique_values: dict[tuple, str] = field(default_factory=dict)
    locked: list[list[str]] = field(default_factory=list)  # the periods each batch share-locked, in order
    # plan_revision and plan_versions: the revision and each customer's ascending effective-from instants
    revision: int = 0
    version_starts: dict[uuid.UUID, tuple] = field(default_factory=dict)
    customers: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)  # billing_customers: details, contact_person_id
    invoices: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)   # invoice_id → its columns
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)         # payment_id → its columns

    # ---- set-up helpers (what the API and a period close would have written) ----------------
    def change_plan_versions(self, customer_id: uuid.UUID, *starts: Any) -> None:
        """A committed version change: `bump_plan_revision` and `upsert_plan_version`."""
        self.revision += 1
        self.version_starts[customer_id] = tuple(sorted(set(self.version_starts.get(customer_id, ())) | set(starts)))

    def save_customer(self, customer_id: uuid.UUID, details: dict[str, Any],
                      contact_person_id: uuid.UUID | None) -> None:
        self.customers[customer_id] = dict(details=dict(details, contact_person_id=str(contact_person_id)
                                                        if contact_person_id else None),
                                           contact_person_id=contact_person_id)

    def issue_invoice(self, customer_id: uuid.UUID, number: int, *, gross: Decimal = Decimal("124.00"),
                      period: str = "2026-03") -> uuid.UUID:
        """An issued invoice with its number's national and RF references (as `issuing.issue`)."""
        invoice_id = uuid.uuid4()
        reference, rf = numbering.references(number)
        self.invoices[invoice_id] = dict(invoice_id=invoice_id, customer_id=customer_id, period=period,
                                         kind="invoice", invoice_number=numbering.number_text("", number),
                                         reference=reference, rf_reference=rf, gross=gross)
        return invoice_id

    # ---- storage.py: plan revision ------------------------------------------------------------
    async def plan_revision_for_usage(self) -> int:
        return self.revision

    async def load_version_starts(self) -> tuple[int, dict[uuid.UUID, tuple]]:
        return self.revision, dict(self.version_starts)

    # ---- storage.py: periods and usage ----------------------------------------------------------
    async def lock_invoice_periods(self, usage_periods: set[str]) -> dict[str, str]:
        wanted = sorted(usage_periods)
        for period in wanted:  # a period's first usage adds it, open
            self.periods.setdefault(period, "open")
        targets = {p: p for p in wanted if self.periods[p] == "open"}
        closed = {p for p, s in self.periods.items() if s == "closed"}
        for period in (p for p in wanted if self.periods[p] == "closed"):
            target = domain.invoice_target(period, closed)
            self.periods.setdefault(target, "open")
            targets[period] = target
        self.locked.append(sorted(set(targets.values()) | set(wanted)))
        return targets

    async def apply_folded_usage(self, folded: domain.FoldedUsage, targets: dict[str, str]) -> None:
        for (customer, meter, period, dims, version), agg in folded.aggregates.items():
            key = (customer, meter, period, targets[period], dims, version)
            row = self.aggregates.get(key)
            if row is None:
                self.aggregates[key] = dict(quantity_sum=agg.quantity_sum, event_count=agg.event_count,
                                            quantity_max=agg.quantity_max, latest_quantity=agg.latest_quantity,
                                            latest_at=agg.latest_at)
                continue
            newer = agg.latest_at > row["latest_at"] or (agg.latest_at == row["latest_at"]
                                                         and agg.latest_quantity > row["latest_quantity"])
            row.update(quantity_sum=row["quantity_sum"] + agg.quantity_sum,
                       event_count=row["event_count"] + agg.event_count,
                       quantity_max=max(row["quantity_max"], agg.quantity_max),
                       latest_quantity=agg.latest_quantity if newer else row["latest_quantity"],
                       latest_at=max(row["latest_at"], agg.latest_at))
        for key, (count, quantity) in folded.persons.items():
            row = self.persons.setdefault(key, dict(event_count=0, quantity_sum=Decimal(0), pseudonymised=False))
            row["event_count"] += count
            row["quantity_sum"] += quantity
        for key in folded.unique_values:  # the first sighting decides the invoice period
            self.unique_values.setdefault(key, targets[key[2]])

    async def person_usage(self, person_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = [dict(customer_id=c, meter=m, period=p, event_count=r["event_count"], quantity_sum=r["quantity_sum"])
                for (c, person, m, p), r in self.persons.items() if person == person_id]
        return sorted(rows, key=lambda r: (r["period"], str(r["customer_id"]), r["meter"]))

    async def pseudonymise_person(self, person_id: uuid.UUID) -> int:
        pseudonym, count = uuid.uuid4(), 0
        for (c, person, m, p) in list(self.persons):
            if person == person_id:
                row = self.persons.pop((c, person, m, p))
                self.persons[(c, pseudonym, m, p)] = dict(row, pseudonymised=True)
                count += 1
        return count

    async def pseudonymise_contact_person(self, person_id: uuid.UUID) -> int:
        pseudonym, count = uuid.uuid4(), 0
        for row in self.customers.values():
            if row["contact_person_id"] == person_id:
                row["contact_person_id"] = pseudonym
                row["details"] = dict(row["details"], contact_person_id=str(pseudonym))
                count += 1
        return count

    # ---- payments.py ------------------------------------------------------------------------------
    async def apply_payment(self, payment: PaymentReceived) -> bool:
        # The checks before the SQL are the product's own pure rules.
        if problem := payment_rules.reference_problem(payment.reference):
            raise Rejected(f"reference: {problem}")
        key = finnish.normalise_reference(payment.reference)
        column = "rf_reference" if key.startswith("RF") else "reference"
        invoice_id = next((i for i, row in self.invoices.items()
                           if row[column] == key and row["kind"] == "invoice"), None)
        if payment.payment_id in self.payments:  # ON CONFLICT (payment_id) DO NOTHING
            return False
        self.payments[payment.payment_id] = dict(payment_id=payment.payment_id, reference=key, amount=payment.amount,
                                                 paid_on=payment.paid_on, invoice_id=invoice_id)
        return True

    async def person_payments(self, person_id: uuid.UUID) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for p in self.payments.values():
            invoice = self.invoices.get(p["invoice_id"])  # JOIN invoices: an unmatched payment drops out
            buyer = self.customers.get(invoice["customer_id"]) if invoice else None
            if buyer is not None and buyer["contact_person_id"] == person_id:
                rows.append(dict(payment_id=p["payment_id"], amount=p["amount"], paid_on=p["paid_on"],
                                 invoice_number=invoice["invoice_number"], customer_id=invoice["customer_id"]))
        return sorted(rows, key=lambda r: (r["paid_on"], r["payment_id"]))

