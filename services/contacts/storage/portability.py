"""SQL of portability exports (GDPR Art. 20, issue 14): the request and the other services'
parts, collected like an access report's."""
from __future__ import annotations

import uuid
from typing import Any

from services.contacts.storage.common import Conn

__all__ = ["insert_portability_export", "get_portability_export", "store_portability_part"]


async def insert_portability_export(conn: Conn, export_id: uuid.UUID, person_id: uuid.UUID, requested_by: str,
                                    expected: list[str]) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO portability_exports (id, person_id, requested_by, expected_services) VALUES ($1, $2, $3, $4)"
        " RETURNING *", export_id, person_id, requested_by, expected)
    return dict(row)


async def get_portability_export(conn: Conn, export_id: uuid.UUID, *, for_update: bool = False
                                 ) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM portability_exports WHERE id = $1"
                              + (" FOR UPDATE" if for_update else ""), export_id)
    return dict(row) if row else None


async def store_portability_part(conn: Conn, export_id: uuid.UUID, service: str, items: list[dict[str, Any]]) -> bool:
    """A service answers once (a replay changes nothing); the last expected part makes it ready."""
    status = await conn.execute(
        "UPDATE portability_exports SET parts = parts || jsonb_build_object($2::text, $3::jsonb),"
        " ready_at = CASE WHEN (parts || jsonb_build_object($2::text, $3::jsonb)) ?& expected_services"
        "                 THEN clock_timestamp() ELSE ready_at END"
        " WHERE id = $1 AND NOT parts ? $2", export_id, service, items)
    return status.endswith(" 1")
