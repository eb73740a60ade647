"""Organisations, persons and their service records (R3, R4)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


from services.contacts.domain import PERSON_FIELDS, State

from services.contacts.storage.common import PERSON_COLUMNS, Conn, _row


# ---- organisations ----------------------------------------------------------------------

async def insert_organisation(conn: Conn, org: dict[str, Any], source: str) -> uuid.UUID:
    org_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO organisations (id, name, business_id, address, phone, source) VALUES ($1, $2, $3, $4, $5, $6)",
        org_id, org["name"], org.get("business_id"), org.get("address"), org.get("phone"), source,
    )
    return org_id


async def get_organisation(conn: Conn, org_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(
        "SELECT id, name, business_id, address, phone, source, created_at FROM organisations WHERE id = $1", org_id))


async def organisation_by_business_id(conn: Conn, business_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(
        "SELECT id, name, business_id, address, phone, source, created_at FROM organisations WHERE business_id = $1",
        business_id))


async def ensure_organisation(conn: Conn, business_id: str, name: str | None, source: str) -> uuid.UUID:
    """The organisation with this y-tunnus, created from an import when it is new."""
    row = await conn.fetchrow(
        "INSERT INTO organisations (id, name, business_id, source) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (business_id) DO UPDATE SET updated_at = organisations.updated_at RETURNING id",
        uuid.uuid4(), name or business_id, business_id, source,
    )
    return row["id"]


# ---- persons ----------------------------------------------------------------------------

async def insert_person(conn: Conn, person_id: uuid.UUID, fields: dict[str, Any], *, source: str,
                        legal_basis: str, purposes: list[str], state: State, external_ref: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO persons (id, first_name, last_name, title, expertise, emails, phones, other_contact,"
        " organisation_id, legal_basis, purposes, lifecycle_state, external_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        person_id, fields["first_name"], fields["last_name"], fields.get("title"), fields.get("expertise"),
        fields.get("emails") or [], fields.get("phones") or [], fields.get("other_contact") or {},
        fields.get("organisation_id"), legal_basis, purposes, state.value, external_ref,
    )
    await record_sources(conn, person_id, [f for f in PERSON_FIELDS if fields.get(f) not in (None, [], {})], source)


async def record_sources(conn: Conn, person_id: uuid.UUID, field_names: list[str], source: str) -> None:
    """R4: each field remembers where its current value came from."""
    if not field_names:
        return
    await conn.execute(
        "INSERT INTO field_sources (person_id, field, source) SELECT $1, f, $3 FROM unnest($2::text[]) AS f"
        " ON CONFLICT (person_id, field) DO UPDATE SET source = EXCLUDED.source, recorded_at = now()",
        person_id, field_names, source,
    )


async def get_person(conn: Conn, person_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = $1{lock}", person_id))


async def person_by_external_ref(conn: Conn, external_ref: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE external_ref = $1 FOR UPDATE",
                                    external_ref))


async def field_sources(conn: Conn, person_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT field, source, recorded_at FROM field_sources WHERE person_id = $1", person_id)
    return {r["field"]: {"source": r["source"], "recorded_at": r["recorded_at"]} for r in rows}


async def update_person(conn: Conn, person_id: uuid.UUID, changes: dict[str, Any], source: str) -> None:
    """Set the changed fields (names from PERSON_FIELDS only) and their source."""
    names = [f for f in PERSON_FIELDS if f in changes]
    if not names:
        return
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    await conn.execute(f"UPDATE persons SET {assignments}, updated_at = now() WHERE id = $1",
                       person_id, *[changes[n] for n in names])
    await record_sources(conn, person_id, names, source)


async def set_state(conn: Conn, person_id: uuid.UUID, state: State) -> None:
    await conn.execute("UPDATE persons SET lifecycle_state = $2, state_changed_at = now(), updated_at = now()"
                       " WHERE id = $1", person_id, state.value)


async def add_purposes(conn: Conn, person_id: uuid.UUID, purposes: list[str]) -> None:
    await conn.execute(
        "UPDATE persons SET purposes = ARRAY(SELECT DISTINCT unnest(purposes || $2::text[])) WHERE id = $1",
        person_id, purposes)


async def search_persons(conn: Conn, *, name: str | None, email: str | None, phone: str | None,
                         organisation_id: uuid.UUID | None, include_passive: bool, limit: int,
                         after: tuple[datetime, uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Matching persons in the order they were registered, keyset paged by (created_at, id): the
    cursor carries no name (SPEC §9: a cursor is in URLs and access logs).

    An email or phone names a handful of persons: they are found through its index first (a
    materialised CTE), then ordered. Left to itself the planner walks the registration order and
    filters, which took a second at a million persons (`bench/scale_bench.py`)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    points = ([f"emails @> ARRAY[{arg(email)}::text]"] if email else []) + \
             ([f"phones @> ARRAY[{arg(phone)}::text]"] if phone else [])
    clauses: list[str] = ["lifecycle_state <> 'erased'"]
    if not include_passive:
        clauses.append("lifecycle_state <> 'passive'")
    if name:
        pattern = arg(f"%{name.lower()}%")
        clauses.append(f"(lower(last_name) LIKE {pattern} OR lower(first_name) LIKE {pattern})")
    if organisation_id:
        clauses.append(f"organisation_id = {arg(organisation_id)}")
    if after is not None:
        clauses.append(f"(created_at, id) > ({arg(after[0])}, {arg(after[1])})")
    matched = f"WITH matched AS MATERIALIZED (SELECT * FROM persons WHERE {' AND '.join(points)}) " if points else ""
    rows = await conn.fetch(f"{matched}SELECT {PERSON_COLUMNS} FROM {'matched' if points else 'persons'}"
                            f" WHERE {' AND '.join(clauses)} ORDER BY created_at, id LIMIT {arg(limit)}", *args)
    return [dict(r) for r in rows]


async def persons_with_contact_points(conn: Conn, emails: list[str], phones: list[str]) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM persons WHERE emails && $1::text[] OR phones && $2::text[]",
                            emails, phones)
    return [r["id"] for r in rows]

# ---- orders, approvals, cancellations, interactions -------------------------------------

async def insert_service_record(conn: Conn, person_id: uuid.UUID, record: dict[str, Any], source: str) -> uuid.UUID:
    record_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO service_records (id, person_id, kind, occurred_at, description, purposes, source)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        record_id, person_id, record["kind"], record["occurred_at"], record["description"], record["purposes"], source)
    return record_id
