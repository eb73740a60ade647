"""SQL of the billing service (asyncpg, parameters always bound)."""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Sequence

import asyncpg
from pydantic_core import to_json

from services.billing import domain

# ---- meters and plans ---------------------------------------------------------------


def _meter(row: asyncpg.Record) -> domain.Meter:
    return domain.Meter(row["name"], domain.Aggregation(row["aggregation"]), tuple(row["dimensions"]),
                        row["unique_dimension"], row["unit"])


async def load_meters(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, domain.Meter]:
    return {r["name"]: _meter(r) for r in await conn.fetch("SELECT * FROM meters")}


async def meters_page(conn: asyncpg.Connection | asyncpg.Pool, limit: int, after: str | None) -> list[domain.Meter]:
    """Meters by name, keyset paged (`after` the last name shown)."""
    return [_meter(r) for r in await conn.fetch(
        "SELECT * FROM meters WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2", after, limit)]


async def save_meter(conn: asyncpg.Connection | asyncpg.Pool, meter: domain.Meter) -> None:
    await conn.execute(
        "INSERT INTO meters (name, aggregation, dimensions, unique_dimension, unit) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (name) DO UPDATE SET aggregation = EXCLUDED.aggregation, dimensions = EXCLUDED.dimensions,"
        " unique_dimension = EXCLUDED.unique_dimension, unit = EXCLUDED.unit, updated_at = now()",
        meter.name, meter.aggregation.value, list(meter.dimensions), meter.unique_dimension, meter.unit,
    )


async def load_customers(conn: asyncpg.Connection | asyncpg.Pool) -> set[uuid.UUID]:
    return {r["customer_id"] for r in await conn.fetch("SELECT DISTINCT customer_id FROM plan_versions")}


async def load_version_starts(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, dict[uuid.UUID, tuple]]:
    """(revision, each customer's ascending effective-from instants), for rating usage."""
    revision = await conn.fetchval("SELECT revision FROM plan_revision WHERE id = 1")
    rows = await conn.fetch("SELECT customer_id, array_agg(effective_from ORDER BY effective_from) AS starts"
                            " FROM plan_versions GROUP BY customer_id")
    return revision, {r["customer_id"]: tuple(r["starts"]) for r in rows}


async def plan_revision_for_usage(conn: asyncpg.Connection) -> int:
    """The plan revision, share-locked: a version change waits for this batch, and this
    batch sees the versions a change committed before it."""
    return await conn.fetchval("SELECT revision FROM plan_revision WHERE id = 1 FOR SHARE")


async def bump_plan_revision(conn: asyncpg.Connection) -> None:
    """Take the revision row (waits for in-flight usage batches) and bump it."""
    await conn.execute("UPDATE plan_revision SET revision = revision + 1 WHERE id = 1")


def _version(row: asyncpg.Record) -> domain.PlanVersion:
    return domain.PlanVersion(row["effective_from"], domain.PricePlan.model_validate(row["plan"]))


async def plan_versions(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID) -> list[domain.PlanVersion]:
    return [_version(r) for r in await conn.fetch(
        "SELECT effective_from, plan FROM plan_versions WHERE customer_id = $1 ORDER BY effective_from", customer_id)]


async def plan_versions_page(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID, limit: int,
                             after: Any = None) -> list[domain.PlanVersion]:
    """A customer's versions by `effective_from`, keyset paged (`after` the last one shown)."""
    return [_version(r) for r in await conn.fetch(
        "SELECT effective_from, plan FROM plan_versions WHERE customer_id = $1"
        " AND ($2::timestamptz IS NULL OR effective_from > $2) ORDER BY effective_from LIMIT $3",
        customer_id, after, limit)]


async def all_plan_versions(conn: asyncpg.Connection) -> dict[uuid.UUID, list[domain.PlanVersion]]:
    versions: dict[uuid.UUID, list[domain.PlanVersion]] = {}
    for r in await conn.fetch("SELECT customer_id, effective_from, plan FROM plan_versions"
                              " ORDER BY customer_id, effective_from"):
        versions.setdefault(r["customer_id"], []).append(_version(r))
    return versions


async def upsert_plan_version(conn: asyncpg.Connection, customer_id: uuid.UUID, effective_from: Any,
                              plan: domain.PricePlan) -> None:
    await conn.execute(
        "INSERT INTO plan_versions (customer_id, effective_from, plan) VALUES ($1, $2, $3)"
        " ON CONFLICT (customer_id, effective_from) DO UPDATE SET plan = EXCLUDED.plan, updated_at = now()",
        customer_id, effective_from, plan.model_dump(mode="json"))


async def last_invoiced_period(conn: asyncpg.Connection, customer_id: uuid.UUID) -> str | None:
    return await conn.fetchval("SELECT max(period) FROM invoices WHERE customer_id = $1 AND kind = 'invoice'",
                               customer_id)


async def usage_recorded_across(conn: asyncpg.Connection, customer_id: uuid.UUID, moment: Any) -> bool:
    """Whether usage at or after `moment` is kept under a version that began before it
    (a version from `moment` would have to split usage that no longer has its times)."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM usage_aggregates WHERE customer_id = $1 AND version_from < $2"
        " AND latest_at >= $2)", customer_id, moment)


async def save_plan(pool: asyncpg.Pool, customer_id: uuid.UUID, plan: domain.PricePlan) -> None:
    """A customer's plan from the start (its first version), for set-up and benchmarks."""
    async with pool.acquire() as conn, conn.transaction():
        await bump_plan_revision(conn)
        await upsert_plan_version(conn, customer_id, domain.BEGINNING, plan)


async def load_plan(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID, at: Any = None
                    ) -> domain.PricePlan | None:
    """The plan in force at `at` (default now)."""
    plan = await conn.fetchval("SELECT plan FROM plan_versions WHERE customer_id = $1 AND effective_from <= "
                               "coalesce($2, now()) ORDER BY effective_from DESC LIMIT 1", customer_id, at)
    return domain.PricePlan.model_validate(plan) if plan is not None else None


# ---- periods ------------------------------------------------------------------------------

_LOCK_PERIODS = "SELECT period, status FROM billing_periods WHERE period = ANY($1::text[]) ORDER BY period FOR SHARE"


async def lock_invoice_periods(conn: asyncpg.Connection, usage_periods: set[str]) -> dict[str, str]:
    """Map each usage period to the period whose invoice bills it, holding a share lock on
    those periods so a concurrent close waits for this transaction (and vice versa)."""
    wanted = sorted(usage_periods)
    rows = await conn.fetch(_LOCK_PERIODS, wanted)
    if len(rows) < len(wanted):  # a period's first usage: add it, then lock them all
        await conn.execute("INSERT INTO billing_periods (period) SELECT unnest($1::text[]) ORDER BY 1"
                           " ON CONFLICT DO NOTHING", wanted)
        rows = await conn.fetch(_LOCK_PERIODS, wanted)
    targets = {r["period"]: r["period"] for r in rows if r["status"] == "open"}
    for period in (r["period"] for r in rows if r["status"] == "closed"):
        while True:  # a close may land between finding the next open period and locking it
            closed = {r["period"] for r in await conn.fetch(
                "SELECT period FROM billing_periods WHERE status = 'closed' AND period >= $1", period)}
            target = domain.invoice_target(period, closed)
            await conn.execute("INSERT INTO billing_periods (period) VALUES ($1) ON CONFLICT DO NOTHING", target)
            status = await conn.fetchval("SELECT status FROM billing_periods WHERE period = $1 FOR SHARE", target)
            if status == "open":
                targets[period] = target
                break
    return targets


async def lock_period_for_close(conn: asyncpg.Connection, period: str) -> str:
    await conn.execute("INSERT INTO billing_periods (period) VALUES ($1) ON CONFLICT DO NOTHING", period)
    return await conn.fetchval("SELECT status FROM billing_periods WHERE period = $1 FOR UPDATE", period)


async def mark_closed(conn: asyncpg.Connection, period: str) -> None:
    await conn.execute("UPDATE billing_periods SET status = 'closed', closed_at = now() WHERE period = $1", period)


async def period_status(conn: asyncpg.Connection | asyncpg.Pool, period: str) -> str | None:
    return await conn.fetchval("SELECT status FROM billing_periods WHERE period = $1", period)


# ---- usage ------------------------------------------------------------------------------------

def _rows(rows: list[Sequence[Any]]) -> str:
    """Rows as one JSON text parameter (`[[v, ...], ...]`), expanded by `jsonb_array_elements`.

    Binding one array per column costs the client ~1 µs per value (asyncpg checks and encodes
    each element: ~10 µs per aggregate row); one JSON document costs ~0.2 µs per value
    (issue 21, measured). UUIDs, decimals (as strings, so exact) and instants (ISO 8601)
    serialise natively; the SQL casts each column back."""
    return to_json(rows).decode()


async def apply_folded_usage(conn: asyncpg.Connection, folded: domain.FoldedUsage, targets: dict[str, str]) -> None:
    """Upsert a batch's aggregates in one statement per table, in the fold's key order, so
    concurrent batches (Kafka and HTTP accepts) lock rows in the same order and cannot
    deadlock. `targets` maps each usage period to the period whose invoice bills it."""
    if folded.aggregates:
        await conn.execute(
            "INSERT INTO usage_aggregates AS a (customer_id, meter, period, invoice_period, dimensions,"
            " quantity_sum, event_count, quantity_max, latest_quantity, latest_at, version_from)"
            " SELECT (r->>0)::uuid, r->>1, r->>2, r->>5, r->>3, (r->>6)::numeric, (r->>7)::bigint,"
            " (r->>8)::numeric, (r->>9)::numeric, (r->>10)::timestamptz, (r->>4)::timestamptz"
            " FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n"
            " ON CONFLICT (customer_id, meter, period, invoice_period, dimensions, version_from) DO UPDATE SET"
            " quantity_sum = a.quantity_sum + EXCLUDED.quantity_sum,"
            " event_count = a.event_count + EXCLUDED.event_count,"
            " quantity_max = GREATEST(a.quantity_max, EXCLUDED.quantity_max),"
            " latest_quantity = CASE WHEN EXCLUDED.latest_at > a.latest_at OR (EXCLUDED.latest_at = a.latest_at"
            "   AND EXCLUDED.latest_quantity > a.latest_quantity) THEN EXCLUDED.latest_quantity ELSE a.latest_quantity END,"
            " latest_at = GREATEST(a.latest_at, EXCLUDED.latest_at)",
            _rows([(*key, targets[key[2]], a.quantity_sum, a.event_count, a.quantity_max, a.latest_quantity,
                    a.latest_at) for key, a in folded.aggregates.items()]),
        )
    if folded.persons:
        await conn.execute(
            "INSERT INTO usage_persons AS u (customer_id, person_id, meter, period, event_count, quantity_sum)"
            " SELECT (r->>0)::uuid, (r->>1)::uuid, r->>2, r->>3, (r->>4)::bigint, (r->>5)::numeric"
            " FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n"
            " ON CONFLICT (customer_id, person_id, meter, period) DO UPDATE SET"
            " event_count = u.event_count + EXCLUDED.event_count, quantity_sum = u.quantity_sum + EXCLUDED.quantity_sum",
            _rows([(*key, count, total) for key, (count, total) in folded.persons.items()]),
        )
    if folded.unique_values:
        # The first sighting decides the invoice period: later ones do nothing.
        await conn.execute(
            "INSERT INTO usage_unique_values (customer_id, meter, period, dimensions, version_from, value,"
            " invoice_period) SELECT (r->>0)::uuid, r->>1, r->>2, r->>3, (r->>4)::timestamptz, r->>5, r->>6"
            " FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n"
            " ON CONFLICT DO NOTHING",
            _rows([(*key, targets[key[2]]) for key in folded.unique_values]),
        )


_BILLED_SCOPE = ("(customer_id, meter, period) IN (SELECT customer_id, meter, period FROM {table}"
                 " WHERE invoice_period = $1) AND invoice_period <= $1")


async def usage_for_invoice(conn: asyncpg.Connection, period: str) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Aggregates and distinct values of every (customer, meter, usage period) that the
    invoice of `period` bills, with what earlier invoices billed of them."""
    rows = await conn.fetch(
        "SELECT * FROM usage_aggregates WHERE " + _BILLED_SCOPE.format(table="usage_aggregates"), period)
    uniques = await conn.fetch(
        "SELECT customer_id, meter, period, version_from, value, invoice_period FROM usage_unique_values WHERE "
        + _BILLED_SCOPE.format(table="usage_unique_values"), period)
    return rows, uniques


async def usage_report_rows(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID, period: str
                            ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    rows = await conn.fetch("SELECT * FROM usage_aggregates WHERE customer_id = $1 AND period = $2", customer_id, period)
    uniques = await conn.fetch("SELECT meter, dimensions, value FROM usage_unique_values"
                               " WHERE customer_id = $1 AND period = $2", customer_id, period)
    return rows, uniques


async def person_usage(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT customer_id, meter, period, event_count, quantity_sum FROM usage_persons"
                            " WHERE person_id = $1 ORDER BY period, customer_id, meter", person_id)


async def pseudonymise_person(conn: asyncpg.Connection, person_id: uuid.UUID) -> int:
    """Replace a person's id in usage with a random pseudonym; quantities stay (R7, SPEC §6)."""
    status = await conn.execute(
        "UPDATE usage_persons SET person_id = $2, pseudonymised = true WHERE person_id = $1",
        person_id, uuid.uuid4())
    return int(status.split()[-1])


async def pseudonymise_contact_person(conn: asyncpg.Connection, person_id: uuid.UUID) -> int:
    """A buyer's contact person reference becomes a pseudonym (R7); the buyer and amounts stay."""
    pseudonym = uuid.uuid4()
    status = await conn.execute(
        "UPDATE billing_customers SET contact_person_id = $2::uuid,"
        " details = jsonb_set(details, '{contact_person_id}', to_jsonb($2::uuid::text)) WHERE contact_person_id = $1",
        person_id, pseudonym)
    return int(status.split()[-1])


# ---- invoices ------------------------------------------------------------------------------------

async def get_invoice(conn: asyncpg.Connection | asyncpg.Pool, invoice_id: uuid.UUID, *, lock: bool = False
                      ) -> asyncpg.Record | None:
    # NO KEY UPDATE: serialises credit notes of one invoice without blocking the foreign-key
    # checks (KEY SHARE) of other rows that reference it.
    return await conn.fetchrow("SELECT * FROM invoices WHERE invoice_id = $1" + (" FOR NO KEY UPDATE" if lock else ""),
                               invoice_id)


async def credited_net(conn: asyncpg.Connection, invoice_id: uuid.UUID) -> Decimal:
    return await conn.fetchval("SELECT coalesce(sum(-net), 0) FROM invoices WHERE credits = $1", invoice_id)


async def list_invoices(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID | None,
                        period: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM invoices WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::text IS NULL OR period = $2)"
        " ORDER BY period, customer_id, issued_at LIMIT 1000", customer_id, period)


# ---- invoice numbers, buyers, documents (issue 18) -----------------------------------------------

async def take_numbers(conn: asyncpg.Connection, series: str, count: int) -> int:
    """Reserve `count` consecutive numbers of `series` in this transaction; the first one.
    The counter row stays locked (FOR UPDATE) until commit, so numbers are gapless: a rolled
    back transaction gives its numbers back, and no two transactions hold the same ones."""
    await conn.execute("INSERT INTO invoice_series (series) VALUES ($1) ON CONFLICT DO NOTHING", series)
    first = await conn.fetchval("SELECT next_number FROM invoice_series WHERE series = $1 FOR UPDATE", series)
    if count:
        await conn.execute("UPDATE invoice_series SET next_number = $2 WHERE series = $1", series, first + count)
    return first


async def invoiced_customers(conn: asyncpg.Connection, period: str) -> set[uuid.UUID]:
    return {r["customer_id"] for r in await conn.fetch(
        "SELECT customer_id FROM invoices WHERE period = $1 AND kind = 'invoice'", period)}


_INVOICE_COLUMNS = ("invoice_id", "customer_id", "period", "kind", "credits", "reason", "net", "vat_rate", "vat",
                    "gross", "lines", "issued_at", "series", "number", "invoice_number", "reference", "rf_reference",
                    "due_date", "parties")


async def insert_invoices(conn: asyncpg.Connection, invoices: list[dict[str, Any]]) -> None:
    """Insert numbered invoices; a duplicate fails the transaction (a skipped row would leave a gap)."""
    await conn.executemany(
        f"INSERT INTO invoices ({', '.join(_INVOICE_COLUMNS)}) VALUES"
        f" ({', '.join(f'${i}' for i in range(1, len(_INVOICE_COLUMNS) + 1))})",
        [[invoice.get(c) for c in _INVOICE_COLUMNS] for invoice in invoices])


async def insert_documents(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, str, str, str]]) -> None:
    if rows:
        await conn.executemany("INSERT INTO invoice_documents (invoice_id, format, content, sha256)"
                               " VALUES ($1, $2, $3, $4)", rows)


async def invoice_document(conn: asyncpg.Connection | asyncpg.Pool, invoice_id: uuid.UUID, fmt: str) -> str | None:
    return await conn.fetchval("SELECT content FROM invoice_documents WHERE invoice_id = $1 AND format = $2",
                               invoice_id, fmt)


async def series_numbers(conn: asyncpg.Connection | asyncpg.Pool, series: str) -> list[int]:
    return [r["number"] for r in await conn.fetch(
        "SELECT number FROM invoices WHERE series = $1 ORDER BY number", series)]


async def save_customer(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID, details: dict[str, Any],
                        contact_person_id: uuid.UUID | None) -> None:
    await conn.execute(
        "INSERT INTO billing_customers (customer_id, details, contact_person_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (customer_id) DO UPDATE SET details = EXCLUDED.details,"
        " contact_person_id = EXCLUDED.contact_person_id, updated_at = now()",
        customer_id, details, contact_person_id)


async def load_customer(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID) -> dict[str, Any] | None:
    return await conn.fetchval("SELECT details FROM billing_customers WHERE customer_id = $1", customer_id)


async def all_customers(conn: asyncpg.Connection) -> dict[uuid.UUID, dict[str, Any]]:
    return {r["customer_id"]: r["details"] for r in await conn.fetch("SELECT customer_id, details FROM billing_customers")}


async def page_invoices(conn: asyncpg.Connection | asyncpg.Pool, customer_id: uuid.UUID | None, period: str | None,
                        after: tuple[Any, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    """Invoices in issue order, `limit` + 1 of them (the extra one says that more exist)."""
    return await conn.fetch(
        "SELECT * FROM invoices WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::text IS NULL OR period = $2)"
        " AND ($3::timestamptz IS NULL OR (issued_at, invoice_id) > ($3, $4::uuid))"
        " ORDER BY issued_at, invoice_id LIMIT $5",
        customer_id, period, after[0] if after else None, after[1] if after else None, limit + 1)
