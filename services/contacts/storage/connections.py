"""Relationships and assignments, accepted in any order (R5, R6, P2)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any



from services.contacts.storage.common import Conn, _row


# ---- relationships and assignments (R5, R6, P2) -----------------------------------------

async def insert_relationship(conn: Conn, rel_id: uuid.UUID, person_id: uuid.UUID, organisation_id: uuid.UUID | None,
                              kind: str, started_at: datetime, source: str) -> bool:
    """True if this opened the relationship; a start arriving after its end only fills in facts."""
    opened = await conn.fetchval(
        "INSERT INTO relationships (id, person_id, organisation_id, kind, started_at, source)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
        "  kind = COALESCE(relationships.kind, EXCLUDED.kind), started_at = COALESCE(relationships.started_at,"
        "  EXCLUDED.started_at), organisation_id = COALESCE(relationships.organisation_id, EXCLUDED.organisation_id)"
        " WHERE relationships.person_id = EXCLUDED.person_id AND relationships.started_at IS NULL"
        " RETURNING xmax = 0", rel_id, person_id, organisation_id, kind, started_at, source)
    return bool(opened)


async def get_relationship(conn: Conn, rel_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow("SELECT * FROM relationships WHERE id = $1", rel_id))


async def end_relationship(conn: Conn, rel_id: uuid.UUID, ended_at: datetime) -> bool:
    status = await conn.execute("UPDATE relationships SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
                                rel_id, ended_at)
    return status.endswith(" 1")


async def end_relationship_seen_first(conn: Conn, rel_id: uuid.UUID, person_id: uuid.UUID, ended_at: datetime,
                                      source: str) -> bool:
    """An end whose start has not arrived: recorded as ended; False if the id is already taken."""
    status = await conn.execute(
        "INSERT INTO relationships (id, person_id, ended_at, source) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO NOTHING", rel_id, person_id, ended_at, source)
    return status.endswith(" 1")


async def ensure_assignment(conn: Conn, assignment_id: uuid.UUID, given_by: str | None, title: str | None,
                            started_at: datetime | None, source: str) -> None:
    """The assignment, created by whichever of its events arrives first; later facts fill it in."""
    await conn.execute(
        "INSERT INTO assignments (id, given_by, title, started_at, source) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO UPDATE SET given_by = COALESCE(assignments.given_by, EXCLUDED.given_by),"
        "  started_at = COALESCE(assignments.started_at, EXCLUDED.started_at)"
        " WHERE assignments.given_by IS NULL OR assignments.started_at IS NULL",
        assignment_id, given_by, title, started_at, source)


async def get_assignment(conn: Conn, assignment_id: uuid.UUID) -> dict[str, Any] | None:
    row = _row(await conn.fetchrow("SELECT * FROM assignments WHERE id = $1", assignment_id))
    if row is not None:
        row["participants"] = [dict(r) for r in await conn.fetch(
            "SELECT person_id, started_at, ended_at FROM assignment_participants WHERE assignment_id = $1"
            " ORDER BY person_id", assignment_id)]
    return row


async def add_participant(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID, started_at: datetime) -> bool:
    """True if this opened the participation; a start arriving after its end only fills in the time."""
    opened = await conn.fetchval(
        "INSERT INTO assignment_participants (assignment_id, person_id, started_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (assignment_id, person_id) DO UPDATE SET started_at = EXCLUDED.started_at"
        " WHERE assignment_participants.started_at IS NULL RETURNING xmax = 0", assignment_id, person_id, started_at)
    return bool(opened)


async def end_participation_seen_first(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID,
                                       ended_at: datetime) -> bool:
    """An end whose start has not arrived: recorded as ended participation."""
    await ensure_assignment(conn, assignment_id, None, None, None, "service_event")
    status = await conn.execute(
        "INSERT INTO assignment_participants (assignment_id, person_id, ended_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING", assignment_id, person_id, ended_at)
    await _end_assignment_when_no_one_is_left(conn, assignment_id, ended_at)
    return status.endswith(" 1")


async def end_participation(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID, ended_at: datetime) -> bool:
    status = await conn.execute(
        "UPDATE assignment_participants SET ended_at = $3"
        " WHERE assignment_id = $1 AND person_id = $2 AND ended_at IS NULL", assignment_id, person_id, ended_at)
    await _end_assignment_when_no_one_is_left(conn, assignment_id, ended_at)
    return status.endswith(" 1")


async def _end_assignment_when_no_one_is_left(conn: Conn, assignment_id: uuid.UUID, ended_at: datetime) -> None:
    await conn.execute(
        "UPDATE assignments SET status = 'ended', ended_at = $2 WHERE id = $1 AND status = 'open' AND NOT EXISTS"
        " (SELECT 1 FROM assignment_participants WHERE assignment_id = $1 AND ended_at IS NULL)",
        assignment_id, ended_at)


async def open_connections(conn: Conn, person_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM relationships WHERE person_id = $1 AND ended_at IS NULL)"
        " + (SELECT count(*) FROM assignment_participants WHERE person_id = $1 AND ended_at IS NULL)", person_id)
