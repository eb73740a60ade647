"""Retention's SQL (asyncpg, bound parameters): person facts, timers, holds, evidence.

Lock order everywhere is person row, then its deadlines: event handlers lock the person
(`lock_person`) before touching timers, and the scheduler claims deadlines together with
their person rows using SKIP LOCKED, so replicas and handlers never wait on each other in
a cycle and no person is disposed of twice.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Sequence

import asyncpg

from services.retention.domain import ErasureRequest, Hold, PlannedDeadline, Span
from services.retention.timing import TimingFacts
from shared.privacy import keystore


# ---- person facts -----------------------------------------------------------------------

async def lock_person(conn: asyncpg.Connection, person_id: uuid.UUID) -> str | None:
    """The person's state, row locked for this transaction; None once disposed of."""
    if await conn.fetchval("SELECT 1 FROM disposed_persons WHERE person_id = $1", person_id):
        return None
    await conn.execute("INSERT INTO persons (person_id) VALUES ($1) ON CONFLICT DO NOTHING", person_id)
    return await conn.fetchval("SELECT state FROM persons WHERE person_id = $1 FOR UPDATE", person_id)


async def set_state(conn: asyncpg.Connection, person_id: uuid.UUID, state: str) -> None:
    await conn.execute("UPDATE persons SET state = $2, updated_at = now() WHERE person_id = $1", person_id, state)


async def relationship_started(conn: asyncpg.Connection, person_id: uuid.UUID, relationship_id: uuid.UUID,
                               started_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO relationships (relationship_id, person_id, started_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (relationship_id) DO UPDATE SET started_at = EXCLUDED.started_at",
        relationship_id, person_id, started_at)


async def relationship_ended(conn: asyncpg.Connection, person_id: uuid.UUID, relationship_id: uuid.UUID,
                             ended_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO relationships (relationship_id, person_id, ended_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (relationship_id) DO UPDATE SET ended_at = EXCLUDED.ended_at",
        relationship_id, person_id, ended_at)


async def assignment_started(conn: asyncpg.Connection, person_id: uuid.UUID, assignment_id: uuid.UUID,
                             started_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO assignments (person_id, assignment_id, started_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id, assignment_id) DO UPDATE SET started_at = EXCLUDED.started_at",
        person_id, assignment_id, started_at)


async def assignment_ended(conn: asyncpg.Connection, person_id: uuid.UUID, assignment_id: uuid.UUID,
                           ended_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO assignments (person_id, assignment_id, ended_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id, assignment_id) DO UPDATE SET ended_at = EXCLUDED.ended_at",
        person_id, assignment_id, ended_at)


async def spans(conn: asyncpg.Connection, person_id: uuid.UUID) -> tuple[list[Span], list[Span]]:
    rels = await conn.fetch("SELECT ended_at FROM relationships WHERE person_id = $1", person_id)
    asgs = await conn.fetch("SELECT ended_at FROM assignments WHERE person_id = $1", person_id)
    return [Span(r["ended_at"]) for r in rels], [Span(r["ended_at"]) for r in asgs]


async def sync_deadlines(conn: asyncpg.Connection, person_id: uuid.UUID, planned: Sequence[PlannedDeadline],
                         policy_version: str) -> None:
    """Make the person's pending timers exactly `planned` (cancel the rest). Caller holds the person lock."""
    await conn.execute(
        "UPDATE deadlines SET status = 'cancelled', closed_at = now()"
        " WHERE person_id = $1 AND status = 'pending' AND NOT (action = ANY($2::text[]))",
        person_id, [p.action for p in planned])  # (a passivation skipped below stays closed, as done)
    for p in planned:
        if p.action == "passivate" and await conn.fetchval(
                "SELECT true FROM deadlines WHERE person_id = $1 AND action = 'passivate' AND status = 'done'"
                " AND anchor_at = $2", person_id, p.anchor_at):
            continue  # commanded already for these same facts; contacts' confirmation makes it passive
        await conn.execute(
            "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (person_id, action) WHERE status = 'pending' DO UPDATE SET"
            "  due_at = CASE WHEN deadlines.held_by IS NULL THEN EXCLUDED.due_at"
            "                ELSE GREATEST(deadlines.due_at, EXCLUDED.due_at) END,"
            "  deferred_from = CASE WHEN deadlines.held_by IS NULL THEN NULL ELSE EXCLUDED.due_at END,"
            "  basis = EXCLUDED.basis, anchor_at = EXCLUDED.anchor_at, policy_version = EXCLUDED.policy_version",
            person_id, p.action, p.due_at, p.basis, p.anchor_at, policy_version)


async def stale_timed_persons(conn: asyncpg.Connection, policy_version: str, after: uuid.UUID,
                              limit: int) -> list[uuid.UUID]:
    """Persons (ids above `after`, in order) with a pending timer planned under another policy
    version and at least one span to plan from."""
    rows = await conn.fetch(
        "SELECT DISTINCT d.person_id FROM deadlines d"
        " WHERE d.status = 'pending' AND d.policy_version <> $1 AND d.person_id > $2"
        "  AND (EXISTS (SELECT 1 FROM relationships r WHERE r.person_id = d.person_id)"
        "       OR EXISTS (SELECT 1 FROM assignments a WHERE a.person_id = d.person_id))"
        " ORDER BY d.person_id LIMIT $3", policy_version, after, limit)
    return [r["person_id"] for r in rows]


async def grant_permission(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str) -> None:
    """A later permission for a purpose supersedes an earlier ban of it (consent decided so)."""
    await conn.execute("INSERT INTO marketing_permissions VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                       person_id, purpose, channel)
    await conn.execute("DELETE FROM marketing_bans WHERE person_id = $1 AND purpose = $2", person_id, purpose)


async def withdraw_permission(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str) -> None:
    await conn.execute("DELETE FROM marketing_permissions WHERE person_id = $1 AND purpose = $2 AND channel = $3",
                       person_id, purpose, channel)


async def register_ban(conn: asyncpg.Connection, person_id: uuid.UUID, purposes: Sequence[str]) -> None:
    await conn.execute(
        "INSERT INTO marketing_bans SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING",
        person_id, list(purposes))
    await conn.execute("DELETE FROM marketing_permissions WHERE person_id = $1 AND purpose = ANY($2::text[])",
                       person_id, list(purposes))


async def request_erasure(conn: asyncpg.Connection, person_id: uuid.UUID, request_id: uuid.UUID,
                          requested_at: datetime) -> None:
    """Art. 17, issue 14: the first decided request stands (a redelivery changes nothing)."""
    await conn.execute("INSERT INTO erasure_requests (person_id, request_id, requested_at) VALUES ($1, $2, $3)"
                       " ON CONFLICT (person_id) DO NOTHING", person_id, request_id, requested_at)


async def erasure_request(conn: asyncpg.Connection, person_id: uuid.UUID) -> ErasureRequest | None:
    row = await conn.fetchrow("SELECT request_id, requested_at FROM erasure_requests WHERE person_id = $1", person_id)
    return ErasureRequest(row["request_id"], row["requested_at"]) if row else None


async def erasure_requested(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Of these persons, those whose disposition must be an erasure (Art. 17)."""
    rows = await conn.fetch("SELECT person_id FROM erasure_requests WHERE person_id = ANY($1::uuid[])", person_ids)
    return {r["person_id"] for r in rows}


async def forget_persons(conn: asyncpg.Connection, person_ids: list[uuid.UUID], outcome: str) -> None:
    """Drop the personal tracking after a disposition; keep evidence and a tombstone (ids only)."""
    await conn.execute(
        "INSERT INTO disposed_persons (person_id, outcome) SELECT unnest($1::uuid[]), $2 ON CONFLICT DO NOTHING",
        person_ids, outcome)
    await conn.execute("UPDATE deadlines SET status = 'cancelled', closed_at = now()"
                       " WHERE person_id = ANY($1::uuid[]) AND status = 'pending'", person_ids)
    for table in ("relationships", "assignments", "marketing_permissions", "marketing_bans", "erasure_requests",
                  "persons"):
        await conn.execute(f"DELETE FROM {table} WHERE person_id = ANY($1::uuid[])", person_ids)


# ---- the scheduler ------------------------------------------------------------------------

async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Due timers with their person rows locked; rows another replica holds are skipped."""
    return await conn.fetch(
        "SELECT d.id, d.person_id, d.action, d.due_at, d.basis, d.policy_version, p.state"
        " FROM deadlines d JOIN persons p ON p.person_id = d.person_id"
        " WHERE d.status = 'pending' AND d.due_at <= $1"
        " ORDER BY d.due_at LIMIT $2 FOR UPDATE OF d, p SKIP LOCKED",
        now, limit)


async def decision_facts(conn: asyncpg.Connection, person_ids: list[uuid.UUID]
                         ) -> tuple[dict[uuid.UUID, set[str]], dict[uuid.UUID, set[str]], dict[uuid.UUID, list[tuple[uuid.UUID, Hold]]]]:
    granted: dict[uuid.UUID, set[str]] = {}
    banned: dict[uuid.UUID, set[str]] = {}
    holds: dict[uuid.UUID, list[tuple[uuid.UUID, Hold]]] = {}
    for r in await conn.fetch("SELECT person_id, purpose FROM marketing_permissions WHERE person_id = ANY($1::uuid[])",
                              person_ids):
        granted.setdefault(r["person_id"], set()).add(r["purpose"])
    for r in await conn.fetch("SELECT person_id, purpose FROM marketing_bans WHERE person_id = ANY($1::uuid[])",
                              person_ids):
        banned.setdefault(r["person_id"], set()).add(r["purpose"])
    # The caller holds the person rows: a hold being created now waits for this claim (api.create_hold).
    for r in await conn.fetch("SELECT hold_id, person_id, expires_at, released_at FROM holds"
                              " WHERE person_id = ANY($1::uuid[]) AND released_at IS NULL", person_ids):
        holds.setdefault(r["person_id"], []).append((r["hold_id"], Hold(r["expires_at"], r["released_at"])))
    return granted, banned, holds


async def defer_held(conn: asyncpg.Connection, deferrals: list[tuple[int, datetime, uuid.UUID]]) -> None:
    await conn.execute(
        "UPDATE deadlines d SET deferred_from = COALESCE(d.deferred_from, d.due_at), due_at = t.until, held_by = t.hold_id"
        " FROM unnest($1::bigint[], $2::timestamptz[], $3::uuid[]) AS t(id, until, hold_id) WHERE d.id = t.id",
        [d[0] for d in deferrals], [d[1] for d in deferrals], [d[2] for d in deferrals])


async def close_deadlines(conn: asyncpg.Connection, ids: list[int], now: datetime) -> None:
    await conn.execute("UPDATE deadlines SET status = 'done', closed_at = $2 WHERE id = ANY($1::bigint[])", ids, now)


async def set_states(conn: asyncpg.Connection, person_ids: list[uuid.UUID], states: list[str]) -> None:
    await conn.execute(
        "UPDATE persons p SET state = t.state, updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[]) AS t(person_id, state) WHERE p.person_id = t.person_id",
        person_ids, states)


async def record_commands(conn: asyncpg.Connection, rows: list[dict[str, Any]], *, now: datetime) -> list[asyncpg.Record]:
    """Evidence of a passivation or disposition command per row; the commands to publish."""
    return await conn.fetch(
        "INSERT INTO evidence (command_id, person_id, action, basis, deadline_at, policy_version,"
        "  commanded_at, last_commanded_at, expected)"
        " SELECT gen_random_uuid(), p, a, b, d, v, $7, $7, string_to_array(e, ',')"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])"
        "  AS t(p, a, b, d, v, e)"
        " RETURNING command_id, person_id, action, basis, deadline_at, policy_version",
        [r["person_id"] for r in rows], [r["action"] for r in rows], [r["basis"] for r in rows],
        [r["deadline_at"] for r in rows], [r["policy_version"] for r in rows],
        [",".join(r["expected"]) for r in rows], now)


async def mark_overdue(conn: asyncpg.Connection, cutoff: datetime, limit: int, *, now: datetime) -> list[asyncpg.Record]:
    """Evidence not confirmed in time, marked overdue and re-commanded now; the commands to re-send."""
    return await conn.fetch(
        "WITH due AS (SELECT command_id FROM evidence WHERE completed_at IS NULL AND last_commanded_at < $1"
        "             ORDER BY last_commanded_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE evidence e SET last_commanded_at = $3, attempts = attempts + 1,"
        "  overdue_since = COALESCE(overdue_since, $3) FROM due WHERE e.command_id = due.command_id"
        " RETURNING e.command_id, e.person_id, e.action, e.basis, e.deadline_at, e.policy_version",
        cutoff, limit, now)


# ---- confirmations ------------------------------------------------------------------------

async def resolve_commands(conn: asyncpg.Connection, person_ids: list[uuid.UUID], actions: list[str]
                           ) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """The latest command per (person, action), for confirmations that carry no command id."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (e.person_id, e.action) e.person_id, e.action, e.command_id FROM evidence e"
        " JOIN unnest($1::uuid[], $2::text[]) AS t(p, a) ON e.person_id = t.p AND e.action = t.a"
        " ORDER BY e.person_id, e.action, e.commanded_at DESC", person_ids, actions)
    return {(r["person_id"], r["action"]): r["command_id"] for r in rows}


async def record_confirmations(conn: asyncpg.Connection, command_ids: list[uuid.UUID], services: list[str],
                               confirmed_at: list[datetime], now: datetime) -> int:
    """Add each service's first confirmation; complete evidence every expected service confirmed."""
    status = await conn.execute(
        "UPDATE evidence e SET confirmations = c.conf || e.confirmations,"
        " completed_at = CASE WHEN e.completed_at IS NULL AND (c.conf || e.confirmations) ?& e.expected"
        "                     THEN $4 ELSE e.completed_at END"
        " FROM (SELECT cid, jsonb_object_agg(svc, at) AS conf"
        "       FROM (SELECT DISTINCT ON (cid, svc) cid, svc, at"
        "             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS t(cid, svc, at)"
        "             ORDER BY cid, svc, at) AS firsts GROUP BY cid) AS c"
        " WHERE e.command_id = c.cid",
        command_ids, services, confirmed_at, now)
    return int(status.split()[-1])


async def shred_completed_erasures(conn: asyncpg.Connection, command_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The erasure's last step (SPEC §9, issue 15): once every expected service confirmed an
    erasure, the person's data keys are destroyed in this transaction, so every sealed copy
    left anywhere (topics, dead letters, backups) is unreadable. Returns the persons shredded."""
    persons = [r["person_id"] for r in await conn.fetch(
        "SELECT DISTINCT person_id FROM evidence WHERE command_id = ANY($1::uuid[]) AND action = 'erase'"
        " AND completed_at IS NOT NULL", command_ids)]
    if persons:
        await keystore.destroy_keys(conn, persons)
    return persons


async def data_key_destroyed_at(conn: asyncpg.Connection, person_id: uuid.UUID) -> datetime | None:
    return (await keystore.destroyed_at(conn, [person_id])).get(person_id)  # type: ignore[return-value]


# ---- holds and reports ------------------------------------------------------------------

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


async def person_slice(conn: asyncpg.Connection, person_id: uuid.UUID) -> dict[str, list[asyncpg.Record]]:
    """Everything retention holds about one person, for a right-of-access report (R12)."""
    queries = {
        "person": "SELECT state, updated_at FROM persons WHERE person_id = $1",
        "relationships": "SELECT relationship_id, started_at, ended_at FROM relationships WHERE person_id = $1",
        "assignments": "SELECT assignment_id, started_at, ended_at FROM assignments WHERE person_id = $1",
        "permissions": "SELECT purpose, channel FROM marketing_permissions WHERE person_id = $1",
        "bans": "SELECT purpose FROM marketing_bans WHERE person_id = $1",
        "deadlines": "SELECT action, due_at, basis, policy_version, created_at FROM deadlines"
                     " WHERE person_id = $1 AND status = 'pending'",
        "holds": "SELECT hold_id, reason, expires_at, created_at FROM holds WHERE person_id = $1 AND released_at IS NULL",
        "evidence": "SELECT command_id, action, basis, deadline_at, commanded_at, completed_at FROM evidence"
                    " WHERE person_id = $1",
        "erasure_request": "SELECT request_id, requested_at FROM erasure_requests WHERE person_id = $1",  # Art. 17
    }
    return {name: await conn.fetch(sql, person_id) for name, sql in queries.items()}


# ---- a person's visible timing (issue 14) --------------------------------------------------

DISPOSED_STATE = {"erase": "erased", "transfer_to_marketing": "marketing"}


async def timing_facts(conn: asyncpg.Connection, person_id: uuid.UUID) -> TimingFacts | None:
    """The rows `timing.person_retention` is built from; None if retention never knew the person."""
    state = await conn.fetchval("SELECT state FROM persons WHERE person_id = $1", person_id)
    if state is None:
        outcome = await conn.fetchval("SELECT outcome FROM disposed_persons WHERE person_id = $1", person_id)
        if outcome is None:
            return None
        state = DISPOSED_STATE.get(outcome, outcome)
    deadlines = await conn.fetch(
        "SELECT action, status, due_at, deferred_from, basis, anchor_at, policy_version, held_by FROM deadlines"
        " WHERE person_id = $1 AND status IN ('pending', 'done') ORDER BY created_at DESC, id DESC", person_id)
    holds = await conn.fetch("SELECT hold_id, reason, expires_at, released_at FROM holds"
                             " WHERE person_id = $1 AND released_at IS NULL", person_id)
    commands = await conn.fetch(
        "SELECT command_id, action, deadline_at, commanded_at, last_commanded_at, overdue_since FROM evidence"
        " WHERE person_id = $1 AND completed_at IS NULL ORDER BY commanded_at DESC", person_id)
    spans = await conn.fetchrow(
        "SELECT count(*) AS spans, count(*) FILTER (WHERE ended_at IS NULL) AS open FROM"
        " (SELECT ended_at FROM relationships WHERE person_id = $1"
        "  UNION ALL SELECT ended_at FROM assignments WHERE person_id = $1) s", person_id)
    return TimingFacts(state=state, deadlines=[dict(r) for r in deadlines], holds=[dict(r) for r in holds],
                       open_commands=[dict(r) for r in commands], open_spans=spans["open"], spans=spans["spans"])


# The SQL form of `timing.blocked_since` ($1 now, $2 now - confirmation timeout): a disposition
# past its legal deadline kept by a hold in force, or commanded and not confirmed in time.
_BLOCKED = (
    "SELECT d.person_id, 'hold' AS blocked_by, COALESCE(d.deferred_from, d.due_at) AS deadline_at,"
    "       NULL::uuid AS command_id,"
    "       (SELECT h.hold_id FROM holds h WHERE h.person_id = d.person_id AND h.released_at IS NULL"
    "         AND h.expires_at > $1 ORDER BY h.expires_at DESC LIMIT 1) AS hold_id"
    " FROM deadlines d WHERE d.status = 'pending' AND d.action = 'dispose'"
    "  AND COALESCE(d.deferred_from, d.due_at) <= $1"
    "  AND EXISTS (SELECT 1 FROM holds h WHERE h.person_id = d.person_id AND h.released_at IS NULL AND h.expires_at > $1)"
    " UNION ALL"
    " SELECT e.person_id, 'unconfirmed', e.deadline_at, e.command_id, NULL::uuid FROM evidence e"
    " WHERE e.completed_at IS NULL AND e.action <> 'passivate'"
    "  AND (e.overdue_since IS NOT NULL OR e.commanded_at < $2)")  # since first sent: a re-send does not unblock


async def blocked_count(conn: asyncpg.Connection, now: datetime, cutoff: datetime) -> int:
    """How many persons' dispositions are blocked past their deadline (the gauge)."""
    return await conn.fetchval(f"SELECT count(DISTINCT person_id) FROM ({_BLOCKED}) b", now, cutoff)


async def blocked_dispositions(conn: asyncpg.Connection, now: datetime, cutoff: datetime,
                               limit: int) -> tuple[int, list[asyncpg.Record]]:
    """Persons whose disposition is blocked past its deadline (count of persons, and the oldest rows)."""
    count = await blocked_count(conn, now, cutoff)
    rows = await conn.fetch(f"SELECT * FROM ({_BLOCKED}) b ORDER BY deadline_at, person_id LIMIT $3",
                            now, cutoff, limit)
    return count, rows
