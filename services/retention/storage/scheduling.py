"""The scheduler's SQL: claiming due timers with their person rows (SKIP LOCKED, so replicas
and handlers never wait on each other in a cycle), recording commands, and resolving the
services' confirmations up to the data key's destruction."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.retention.domain import Hold
from shared.privacy import keystore


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
