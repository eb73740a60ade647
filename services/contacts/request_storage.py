"""SQL of request deadlines (SPEC §10): the rows of `rights_requests`, their pauses, the queue
view. Dates come from `deadlines` (pure); this module only stores and reads them."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from services.contacts.deadlines import Deadline, local_date, pause_days

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
QUEUE_COLUMNS = ("id, kind, person_id, channel, received_at, received_on, paused_days, due_date, extension_months,"
                 " extended_until, extension_reason, extended_by, extended_at, identity_method, identity_verified_at,"
                 " answer_by, answered_at, status")


async def insert_request(conn: Conn, request_id: uuid.UUID, kind: str, person_id: uuid.UUID | None, channel: str,
                         received_at: datetime, identity_method: str | None, *,
                         immediate: bool = False) -> dict[str, Any]:
    """A request received now. Without a verified identity the clock is paused from receipt;
    an `immediate` one is due the day it is received."""
    deadline = Deadline(local_date(received_at))
    verified_at = received_at if identity_method is not None else None
    await conn.execute(
        "INSERT INTO rights_requests (id, kind, person_id, channel, received_at, received_on, due_date,"
        " identity_method, identity_verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        request_id, kind, person_id, channel, received_at, deadline.received_on,
        deadline.received_on if immediate else deadline.due_date, identity_method, verified_at)
    if identity_method is None:
        await conn.execute("INSERT INTO rights_request_pauses (request_id, started_at, reason)"
                           " VALUES ($1, $2, 'identity_unverified')", request_id, received_at)
    return await get_request(conn, request_id)  # type: ignore[return-value]


async def get_request(conn: Conn, request_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    if for_update:
        await conn.execute("SELECT 1 FROM rights_requests WHERE id = $1 FOR UPDATE", request_id)
    row = await conn.fetchrow(f"SELECT {QUEUE_COLUMNS} FROM rights_request_queue WHERE id = $1", request_id)
    if row is None:
        return None
    out = dict(row)
    out["pauses"] = [dict(p) for p in await conn.fetch(
        "SELECT started_at, ended_at, reason FROM rights_request_pauses WHERE request_id = $1 ORDER BY started_at",
        request_id)]
    return out


def deadline_of(row: dict[str, Any]) -> Deadline:
    return Deadline(row["received_on"], row["paused_days"], row["extension_months"])


async def record_extension(conn: Conn, request_id: uuid.UUID, deadline: Deadline, reason: str, by: str,
                           at: datetime) -> None:
    await conn.execute(
        "UPDATE rights_requests SET extension_months = $2, extended_until = $3, extension_reason = $4,"
        " extended_by = $5, extended_at = $6 WHERE id = $1",
        request_id, deadline.extension_months, deadline.extended_until, reason, by, at)


async def record_verification(conn: Conn, request_id: uuid.UUID, method: str, at: datetime) -> Deadline:
    """Identity verified at `at`: the open pause ends and the due date moves by every pause's days."""
    await conn.execute("UPDATE rights_request_pauses SET ended_at = $2 WHERE request_id = $1 AND ended_at IS NULL",
                       request_id, at)
    pauses = [(p["started_at"], p["ended_at"]) for p in await conn.fetch(
        "SELECT started_at, ended_at FROM rights_request_pauses WHERE request_id = $1", request_id)]
    row = await conn.fetchrow("SELECT received_on, extension_months FROM rights_requests WHERE id = $1", request_id)
    deadline = Deadline(row["received_on"], pause_days(pauses, at), row["extension_months"])
    await conn.execute(
        "UPDATE rights_requests SET paused_days = $2, due_date = $3, extended_until = $4, identity_method = $5,"
        " identity_verified_at = $6 WHERE id = $1",
        request_id, deadline.paused_days, deadline.due_date, deadline.extended_until, method, at)
    return deadline


async def queue(conn: Conn, *, status: str | None, due_before: date | None, limit: int,
                after: tuple[date, uuid.UUID] | None) -> list[dict[str, Any]]:
    """Requests in deadline order (the most urgent first), paged by (answer_by, id)."""
    rows = await conn.fetch(
        f"SELECT {QUEUE_COLUMNS} FROM rights_request_queue"
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::date IS NULL OR answer_by < $2)"
        " AND ($3::date IS NULL OR (answer_by, id) > ($3, $4::uuid))"
        " ORDER BY answer_by, id LIMIT $5",
        status, due_before, after[0] if after else None, after[1] if after else None, limit)
    return [dict(r) for r in rows]


async def overdue(conn: Conn, today: date, limit: int, after: tuple[date, uuid.UUID] | None = None
                  ) -> list[dict[str, Any]]:
    """Unanswered requests past their last day (an unverified one's clock is paused: not overdue),
    keyset paged by (answer_by, id)."""
    rows = await conn.fetch(
        f"SELECT {QUEUE_COLUMNS} FROM rights_request_queue WHERE status = 'open' AND answer_by < $1"
        " AND ($2::date IS NULL OR (answer_by, id) > ($2, $3::uuid))"
        " ORDER BY answer_by, id LIMIT $4", today, *(after or (None, None)), limit)
    return [dict(r) for r in rows]


async def overdue_count(conn: Conn, today: date) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM rights_request_queue WHERE status = 'open' AND answer_by < $1", today)


async def drop_personal_text(conn: Conn, person_id: uuid.UUID) -> None:
    """SPEC §9 at erasure: the extension's reason (free text that may name the person) goes; the
    dates, the months, who extended and when stay, and `extension_reason_erased_at` marks it.
    An objection's or erasure request's grounds and decision reason go too."""
    await conn.execute("UPDATE rights_requests SET extension_reason = NULL, extension_reason_erased_at = now()"
                       " WHERE person_id = $1 AND extension_reason IS NOT NULL", person_id)
    await conn.execute("UPDATE subject_requests SET grounds = NULL, decision_reason = NULL WHERE person_id = $1",
                       person_id)  # objections' and erasure requests' free text, likewise


# ---- identity codes ---------------------------------------------------------------------

async def store_code(conn: Conn, request_id: uuid.UUID, salt: bytes, code_hash: bytes, expires_at: datetime,
                     tries: int, issued_by: str, at: datetime) -> None:
    """A new code replaces an outstanding one (and its spent tries)."""
    await conn.execute(
        "INSERT INTO identity_codes (request_id, salt, code_hash, expires_at, tries_left, issued_at, issued_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (request_id) DO UPDATE SET salt = EXCLUDED.salt,"
        " code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at, tries_left = EXCLUDED.tries_left,"
        " issued_at = EXCLUDED.issued_at, issued_by = EXCLUDED.issued_by",
        request_id, salt, code_hash, expires_at, tries, at, issued_by)


async def outstanding_code(conn: Conn, request_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT salt, code_hash, expires_at, tries_left FROM identity_codes"
                              " WHERE request_id = $1 FOR UPDATE", request_id)
    return dict(row) if row else None


async def spend_try(conn: Conn, request_id: uuid.UUID) -> int:
    return await conn.fetchval("UPDATE identity_codes SET tries_left = greatest(tries_left - 1, 0)"
                               " WHERE request_id = $1 RETURNING tries_left", request_id)


async def drop_code(conn: Conn, request_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM identity_codes WHERE request_id = $1", request_id)


async def release_access_request(conn: Conn, request_id: uuid.UUID, status: str) -> None:
    """An access request whose identity is now verified: held for a decision, or collecting."""
    await conn.execute("UPDATE access_requests SET status = $2, asked_at = CASE WHEN $2 = 'collecting'"
                       " THEN clock_timestamp() END WHERE id = $1 AND status = 'awaiting_identity'", request_id, status)


# ---- the chargeable decision's reason ---------------------------------------------------

async def record_charge_reason(conn: Conn, request_id: uuid.UUID, earlier_id: uuid.UUID, earlier_at: datetime) -> None:
    await conn.execute("UPDATE access_requests SET chargeable_because = $2, chargeable_because_at = $3 WHERE id = $1",
                       request_id, earlier_id, earlier_at)


def _reason(row: Any) -> dict[str, Any] | None:
    if row is None or row["chargeable_because"] is None:
        return None
    return {"request_id": row["chargeable_because"], "received_at": row["chargeable_because_at"]}


async def charge_reason(conn: Conn, request_id: uuid.UUID) -> dict[str, Any] | None:
    return _reason(await conn.fetchrow(
        "SELECT chargeable_because, chargeable_because_at FROM access_requests WHERE id = $1", request_id))


async def charge_reasons(conn: Conn, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
    rows = await conn.fetch("SELECT id, chargeable_because, chargeable_because_at FROM access_requests"
                            " WHERE id = ANY($1::uuid[])", request_ids)
    return {r["id"]: _reason(r) for r in rows}
