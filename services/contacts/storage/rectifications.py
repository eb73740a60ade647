"""Rectification requests and their decisions (R14)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.contacts.storage.common import Conn, _row


# ---- rectification (R14) ----------------------------------------------------------------

async def insert_rectification(conn: Conn, person_id: uuid.UUID, requested_by: str, changes: dict[str, Any],
                               reason: str | None) -> uuid.UUID:
    rect_id = uuid.uuid4()
    await conn.execute("INSERT INTO rectifications (id, person_id, requested_by, changes, reason)"
                       " VALUES ($1, $2, $3, $4, $5)", rect_id, person_id, requested_by, changes, reason)
    return rect_id


async def get_rectification(conn: Conn, rect_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT * FROM rectifications WHERE id = $1{lock}", rect_id))


async def rectifications_of(conn: Conn, person_id: uuid.UUID, limit: int,
                            before: tuple[datetime, uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """A person's own requests, newest first, with the outcome (never who decided); keyset
    paged by (created_at, id) descending: `before` is the last row of the previous page."""
    rows = await conn.fetch("SELECT id, changes, reason, status, decision_reason, created_at, decided_at"
                            " FROM rectifications WHERE person_id = $1"
                            " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))"
                            " ORDER BY created_at DESC, id DESC LIMIT $4",
                            person_id, *(before or (None, None)), limit)
    return [dict(r) for r in rows]


async def decide_rectification(conn: Conn, rect_id: uuid.UUID, status: str, decided_by: str, reason: str) -> None:
    await conn.execute("UPDATE rectifications SET status = $2, decided_by = $3, decision_reason = $4,"
                       " decided_at = now() WHERE id = $1", rect_id, status, decided_by, reason)


async def lifecycle_states(conn: Conn, person_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch("SELECT id, lifecycle_state FROM persons WHERE id = ANY($1::uuid[])", person_ids)
    return {r["id"]: r["lifecycle_state"] for r in rows}


async def pending_rectifications(conn: Conn, limit: int,
                                 after: tuple[datetime, uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Pending requests, oldest first, keyset paged by (created_at, id)."""
    rows = await conn.fetch("SELECT r.id, r.person_id, r.requested_by, r.created_at FROM rectifications r"
                            " WHERE r.status = 'pending'"
                            " AND ($1::timestamptz IS NULL OR (r.created_at, r.id) > ($1, $2::uuid))"
                            " ORDER BY r.created_at, r.id LIMIT $3", *(after or (None, None)), limit)
    return [dict(r) for r in rows]
