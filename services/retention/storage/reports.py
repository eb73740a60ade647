"""What retention shows: holds, the due, held, overdue and blocked reports (keyset pages),
the evidence of a person's commands and a person's visible timing (issue 14)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.retention.timing import TimingFacts


async def insert_hold(conn: asyncpg.Connection, hold_id: uuid.UUID, person_id: uuid.UUID, reason: str,
                      expires_at: datetime, created_by: str, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO holds (hold_id, person_id, reason, expires_at, created_by, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)", hold_id, person_id, reason, expires_at, created_by, now)


async def release_hold(conn: asyncpg.Connection, hold_id: uuid.UUID, now: datetime) -> asyncpg.Record | None:
    """Release a hold; timers it deferred fall due at their own time again (other holds re-checked then)."""
    row = await conn.fetchrow("UPDATE holds SET released_at = $2 WHERE hold_id = $1 AND released_at IS NULL"
                              " RETURNING hold_id, person_id", hold_id, now)
    if row is not None:
        await conn.execute(
            "UPDATE deadlines SET due_at = COALESCE(deferred_from, due_at), held_by = NULL, deferred_from = NULL"
            " WHERE held_by = $1 AND status = 'pending'", hold_id)
    return row


def _after(columns: str, after: tuple | None, first: int) -> str:
    """The keyset condition of a page after `after` (issue 20): rows strictly past the cursor."""
    return "" if after is None else f" AND ({columns}) > (${first}, ${first + 1})"


async def due_report(conn: asyncpg.Connection, until: datetime, limit: int, after: tuple | None = None
                     ) -> tuple[int, list[asyncpg.Record]]:
    """Pending deadlines due by `until`, in (due_at, id) order, `limit + 1` from after the cursor."""
    where = "status = 'pending' AND due_at <= $1 AND held_by IS NULL"
    count = await conn.fetchval(f"SELECT count(*) FROM deadlines WHERE {where}", until)
    rows = await conn.fetch(f"SELECT id, person_id, action, due_at, basis, policy_version FROM deadlines"
                            f" WHERE {where}{_after('due_at, id', after, 3)} ORDER BY due_at, id LIMIT $2",
                            until, limit + 1, *(after or ()))
    return count, rows


async def held_report(conn: asyncpg.Connection, now: datetime, limit: int, after: tuple | None = None
                      ) -> tuple[int, list[asyncpg.Record]]:
    where = "released_at IS NULL AND expires_at > $1"
    count = await conn.fetchval(f"SELECT count(*) FROM holds WHERE {where}", now)
    rows = await conn.fetch(f"SELECT hold_id, person_id, reason, expires_at, created_by, created_at FROM holds"
                            f" WHERE {where}{_after('expires_at, hold_id', after, 3)} ORDER BY expires_at, hold_id"
                            " LIMIT $2", now, limit + 1, *(after or ()))
    return count, rows


async def overdue_report(conn: asyncpg.Connection, cutoff: datetime, limit: int, after: tuple | None = None
                         ) -> tuple[int, list[asyncpg.Record]]:
    where = "completed_at IS NULL AND (overdue_since IS NOT NULL OR last_commanded_at < $1)"
    count = await conn.fetchval(f"SELECT count(*) FROM evidence WHERE {where}", cutoff)
    rows = await conn.fetch(
        f"SELECT command_id, person_id, action, basis, commanded_at, attempts, expected, confirmations"
        f" FROM evidence WHERE {where}{_after('commanded_at, command_id', after, 3)}"
        " ORDER BY commanded_at, command_id LIMIT $2", cutoff, limit + 1, *(after or ()))
    return count, rows


async def evidence_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM evidence WHERE person_id = $1 ORDER BY commanded_at", person_id)


async def gauge_counts(conn: asyncpg.Connection, now: datetime, cutoff: datetime) -> tuple[int, int]:
    due = await conn.fetchval("SELECT count(*) FROM deadlines WHERE status = 'pending' AND action = 'dispose'"
                              " AND due_at <= $1", now)
    overdue = await conn.fetchval("SELECT count(*) FROM evidence WHERE completed_at IS NULL"
                                  " AND action <> 'passivate' AND (overdue_since IS NOT NULL OR last_commanded_at < $1)",
                                  cutoff)
    return due, overdue


def _sections_query(sections: dict[str, tuple[str, str]], scalars: dict[str, str] | None = None) -> str:
    """One statement for several row sets about a person: each set an array of anonymous
    records, which asyncpg decodes to tuples in their own types. One round trip instead of one
    per set: the access report waited on retention's fifteen (issue 16's benchmark)."""
    parts = [f"ARRAY(SELECT ROW({columns}) FROM {rest}) AS {name}" for name, (columns, rest) in sections.items()]
    parts += [f"({sql}) AS {name}" for name, sql in (scalars or {}).items()]
    return "SELECT " + ", ".join(parts)


def _section_rows(row: asyncpg.Record, sections: dict[str, tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(zip(columns.split(", "), values)) for values in row[name]]
            for name, (columns, _rest) in sections.items()}


# Everything retention holds about one person, by section: (columns, FROM ... WHERE ...).
_SLICE = {
    "person": ("state, updated_at", "persons WHERE person_id = $1"),
    "relationships": ("relationship_id, started_at, ended_at", "relationships WHERE person_id = $1"),
    "assignments": ("assignment_id, started_at, ended_at", "assignments WHERE person_id = $1"),
    "permissions": ("purpose, channel", "marketing_permissions WHERE person_id = $1"),
    "bans": ("purpose", "marketing_bans WHERE person_id = $1"),
    "deadlines": ("action, due_at, basis, policy_version, created_at",
                  "deadlines WHERE person_id = $1 AND status = 'pending'"),
    "holds": ("hold_id, reason, expires_at, created_at", "holds WHERE person_id = $1 AND released_at IS NULL"),
    "evidence": ("command_id, action, basis, deadline_at, commanded_at, completed_at",
                 "evidence WHERE person_id = $1"),
    "erasure_request": ("request_id, requested_at", "erasure_requests WHERE person_id = $1"),  # Art. 17
}
_SLICE_QUERY = _sections_query(_SLICE)


async def person_slice(conn: asyncpg.Connection, person_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """Everything retention holds about one person, for a right-of-access report (R12)."""
    return _section_rows(await conn.fetchrow(_SLICE_QUERY, person_id), _SLICE)


# ---- a person's visible timing (issue 14) --------------------------------------------------

DISPOSED_STATE = {"erase": "erased", "transfer_to_marketing": "marketing"}
_TIMING = {
    "deadlines": ("action, status, due_at, deferred_from, basis, anchor_at, policy_version, held_by",
                  "deadlines WHERE person_id = $1 AND status IN ('pending', 'done') ORDER BY created_at DESC, id DESC"),
    "holds": ("hold_id, reason, expires_at, released_at", "holds WHERE person_id = $1 AND released_at IS NULL"),
    "commands": ("command_id, action, deadline_at, commanded_at, last_commanded_at, overdue_since",
                 "evidence WHERE person_id = $1 AND completed_at IS NULL ORDER BY commanded_at DESC"),
}
_SPANS = ("(SELECT ended_at FROM relationships WHERE person_id = $1"
          " UNION ALL SELECT ended_at FROM assignments WHERE person_id = $1) s")
_TIMING_QUERY = _sections_query(_TIMING, {
    "state": "SELECT state FROM persons WHERE person_id = $1",
    "outcome": "SELECT outcome FROM disposed_persons WHERE person_id = $1",
    "spans": f"SELECT count(*) FROM {_SPANS}",
    "open_spans": f"SELECT count(*) FILTER (WHERE ended_at IS NULL) FROM {_SPANS}"})


async def timing_facts(conn: asyncpg.Connection, person_id: uuid.UUID) -> TimingFacts | None:
    """The rows `timing.person_retention` is built from; None if retention never knew the person."""
    row = await conn.fetchrow(_TIMING_QUERY, person_id)
    state = row["state"]
    if state is None:
        if row["outcome"] is None:
            return None
        state = DISPOSED_STATE.get(row["outcome"], row["outcome"])
    rows = _section_rows(row, _TIMING)
    return TimingFacts(state=state, deadlines=rows["deadlines"], holds=rows["holds"], open_commands=rows["commands"],
                       open_spans=row["open_spans"], spans=row["spans"])


# The SQL form of `timing.blocked_since` ($1 now, $2 now - confirmation timeout): a disposition
# past its legal deadline kept by a hold in force, or commanded and not confirmed in time.
_BLOCKED = (
    "SELECT d.person_id, 'hold' AS blocked_by, COALESCE(d.deferred_from, d.due_at) AS deadline_at,"
    "       'hold:' || d.id AS row_key,"
    "       NULL::uuid AS command_id,"
    "       (SELECT h.hold_id FROM holds h WHERE h.person_id = d.person_id AND h.released_at IS NULL"
    "         AND h.expires_at > $1 ORDER BY h.expires_at DESC LIMIT 1) AS hold_id"
    " FROM deadlines d WHERE d.status = 'pending' AND d.action = 'dispose'"
    "  AND COALESCE(d.deferred_from, d.due_at) <= $1"
    "  AND EXISTS (SELECT 1 FROM holds h WHERE h.person_id = d.person_id AND h.released_at IS NULL AND h.expires_at > $1)"
    " UNION ALL"
    " SELECT e.person_id, 'unconfirmed', e.deadline_at, 'command:' || e.command_id, e.command_id, NULL::uuid"
    " FROM evidence e"
    " WHERE e.completed_at IS NULL AND e.action <> 'passivate'"
    "  AND (e.overdue_since IS NOT NULL OR e.commanded_at < $2)")  # since first sent: a re-send does not unblock


async def blocked_count(conn: asyncpg.Connection, now: datetime, cutoff: datetime) -> int:
    """How many persons' dispositions are blocked past their deadline (the gauge)."""
    return await conn.fetchval(f"SELECT count(DISTINCT person_id) FROM ({_BLOCKED}) b", now, cutoff)


async def blocked_dispositions(conn: asyncpg.Connection, now: datetime, cutoff: datetime, limit: int,
                               after: tuple | None = None) -> tuple[int, list[asyncpg.Record]]:
    """Persons whose disposition is blocked past its deadline (count of persons), and a page of
    rows, oldest deadline first, after the cursor key (deadline_at, person_id, row_key)."""
    count = await blocked_count(conn, now, cutoff)
    where = "" if after is None else " WHERE (deadline_at, person_id, row_key) > ($4, $5, $6)"
    rows = await conn.fetch(f"SELECT * FROM ({_BLOCKED}) b{where} ORDER BY deadline_at, person_id, row_key"
                            " LIMIT $3 + 1", now, cutoff, limit, *(after or ()))
    return count, rows
