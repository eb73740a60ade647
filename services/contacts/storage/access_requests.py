"""Access requests and the parts other services answer (R12)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.contacts.storage.common import Conn, _row


# ---- access requests (R12) --------------------------------------------------------------

ACCESS_COLUMNS = ("id, person_id, emails, phones, contact_digests, channel, verified_by, verification_notes, requested_by,"
                  " chargeable, status, decision, decision_reason, decided_by, decided_at, expected_services,"
                  " created_at, asked_at, fulfilled_at")


async def insert_access_request(conn: Conn, request: dict[str, Any]) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO access_requests (id, person_id, emails, phones, contact_digests, channel, verified_by,"
        " verification_notes, requested_by, chargeable, status, expected_services, asked_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " CASE WHEN $11 = 'collecting' THEN clock_timestamp() END)"
        f" RETURNING {ACCESS_COLUMNS}",
        request["id"], request["person_id"], request["emails"], request["phones"], request["contact_digests"],
        request["channel"], request["verified_by"], request["verification_notes"], request["requested_by"],
        request["chargeable"], request["status"], request["expected_services"])
    return dict(row)


async def get_access_request(conn: Conn, request_id: uuid.UUID, *, for_update: bool = False
                             ) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {ACCESS_COLUMNS} FROM access_requests WHERE id = $1{lock}", request_id))


async def access_requests_by_status(conn: Conn, status: str | None, limit: int, *,
                                    person_id: uuid.UUID | None = None,
                                    after: tuple[datetime, uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Oldest first, keyset paged by (created_at, id); None is any status; `person_id` narrows to
    one person (access_requests_person index)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("status", status), ("person_id", person_id)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if after is not None:
        args += list(after)
        clauses.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await conn.fetch("SELECT id, person_id, channel, chargeable, status, created_at FROM access_requests"
                            f"{where} ORDER BY created_at, id LIMIT ${len(args) + 1}", *args, limit)
    return [dict(r) for r in rows]


async def earlier_access_requests(conn: Conn, person_id: uuid.UUID | None, digests: list[str]
                                  ) -> list[dict[str, Any]]:
    """The person's earlier requests (not refused ones): by person id, or, for a request naming no
    known person, by the same contact points (a shared switchboard number must not count)."""
    rows = await conn.fetch(
        "SELECT id, channel, status, chargeable, created_at FROM access_requests WHERE status <> 'refused'"
        " AND (person_id = $1 OR ($1::uuid IS NULL AND contact_digests && $2::text[])) ORDER BY created_at",
        person_id, digests)
    return [dict(r) for r in rows]


async def decide_access_request(conn: Conn, request_id: uuid.UUID, decision: str, reason: str, decided_by: str,
                                status: str) -> None:
    await conn.execute(
        "UPDATE access_requests SET decision = $2, decision_reason = $3, decided_by = $4, decided_at = now(),"
        " status = $5, asked_at = CASE WHEN $5 = 'collecting' THEN clock_timestamp() END,"
        " emails = CASE WHEN $5 = 'refused' THEN '{}' ELSE emails END,"
        " phones = CASE WHEN $5 = 'refused' THEN '{}' ELSE phones END WHERE id = $1",
        request_id, decision, reason, decided_by, status)


async def store_report_part(conn: Conn, request_id: uuid.UUID, service: str, items: list[dict[str, Any]]) -> bool:
    """A service answers once; a repeated answer (a replay) changes nothing."""
    status = await conn.execute(
        "INSERT INTO access_report_parts (request_id, service, items) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        request_id, service, items)
    return status.endswith(" 1")


async def answered_services(conn: Conn, request_id: uuid.UUID) -> list[str]:
    return [r["service"] for r in await conn.fetch(
        "SELECT service FROM access_report_parts WHERE request_id = $1 ORDER BY service", request_id)]


async def report_parts(conn: Conn, request_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    return {r["service"]: r["items"] for r in await conn.fetch(
        "SELECT service, items FROM access_report_parts WHERE request_id = $1", request_id)}


async def mark_access_fulfilled(conn: Conn, request_id: uuid.UUID) -> None:
    """Assembled: the contact points asked about are no longer needed on the request itself."""
    await conn.execute("UPDATE access_requests SET status = 'fulfilled', fulfilled_at = clock_timestamp(),"
                       " emails = '{}', phones = '{}' WHERE id = $1", request_id)


async def scrub_access_requests(conn: Conn, person_id: uuid.UUID) -> None:
    """R7: on erasure, the content of the person's reports and the contact points asked about go;
    the fact that a request was made and who answered it (ids, dates) stays, so a request still
    collecting completes, empty."""
    await conn.execute("UPDATE access_report_parts SET items = '[]'::jsonb WHERE request_id IN"
                       " (SELECT id FROM access_requests WHERE person_id = $1)", person_id)
    await conn.execute("UPDATE access_requests SET emails = '{}', phones = '{}', contact_digests = '{}',"
                       " verification_notes = NULL WHERE person_id = $1", person_id)
