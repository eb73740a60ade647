"""Retention's facts about a person: the spans that set deadlines, the timers planned from them,
marketing permissions and bans, decided erasure requests, and the tombstone after disposition.
Handlers lock the person row (`lock_person`) before touching any of it."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Sequence

import asyncpg

from services.retention.domain import ErasureRequest, PlannedDeadline, Span


async def lock_person(conn: asyncpg.Connection, person_id: uuid.UUID) -> str | None:
    """The person's state, row locked for this transaction; None once disposed of.

    The tombstone is looked for again once the row is locked: a disposition committing meanwhile
    (`forget_persons`, which locks the rows first) either deleted the row we waited on or let our
    insert make a new one, and that one is dropped again."""
    if await conn.fetchval("SELECT 1 FROM disposed_persons WHERE person_id = $1", person_id):
        return None
    await conn.execute("INSERT INTO persons (person_id) VALUES ($1) ON CONFLICT DO NOTHING", person_id)
    state = await conn.fetchval("SELECT state FROM persons WHERE person_id = $1 FOR UPDATE", person_id)
    if state is not None and await conn.fetchval("SELECT 1 FROM disposed_persons WHERE person_id = $1", person_id):
        await conn.execute("DELETE FROM persons WHERE person_id = $1", person_id)
        return None
    return state


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
    """Drop the personal tracking after a disposition; keep evidence and a tombstone (ids only).

    The person rows are locked first, so no handler holding one writes tracking after the deletes."""
    await conn.execute("SELECT 1 FROM persons WHERE person_id = ANY($1::uuid[]) ORDER BY person_id FOR UPDATE",
                       person_ids)
    await conn.execute(
        "INSERT INTO disposed_persons (person_id, outcome) SELECT unnest($1::uuid[]), $2 ON CONFLICT DO NOTHING",
        person_ids, outcome)
    await conn.execute("UPDATE deadlines SET status = 'cancelled', closed_at = now()"
                       " WHERE person_id = ANY($1::uuid[]) AND status = 'pending'", person_ids)
    for table in ("relationships", "assignments", "marketing_permissions", "marketing_bans", "erasure_requests",
                  "persons"):
        await conn.execute(f"DELETE FROM {table} WHERE person_id = ANY($1::uuid[])", person_ids)
