"""Re-planning one person's timers from what retention knows of them (R5–R7).

Event handlers call `retime` after recording a relationship or assignment fact; at start-up
`replan_stale` re-plans every pending timer that an earlier rule or policy set, so a corrected
rule (or a shorter configured period) applies to people already waiting, not only to new ones.
"""
from __future__ import annotations

import uuid
from typing import Awaitable, Callable

import asyncpg

from services.retention import storage
from services.retention.domain import Policy, plan_deadlines
from shared.logging import get_logger

log = get_logger(__name__)

REACTIVATING_STATES = {"ended", "passive"}
REPLAN_BATCH = 500


async def retime(conn: asyncpg.Connection, policy: Policy, person_id: uuid.UUID,
                 change: Callable[[], Awaitable[object]] | None = None) -> bool:
    """Apply a fact under the person lock and re-plan the timers; False if already disposed of."""
    state = await storage.lock_person(conn, person_id)
    if state is None:
        return False
    if change is not None:
        await change()
    rels, asgs = await storage.spans(conn, person_id)
    spans = [*rels, *asgs]
    any_open = any(s.ended_at is None for s in spans)
    if state == "active" and spans and not any_open:
        state = "ended"
    elif state in REACTIVATING_STATES and any_open:
        state = "active"  # reactivation before the deadline cancels the pending timers
    await storage.set_state(conn, person_id, state)
    await storage.sync_deadlines(conn, person_id, plan_deadlines(state, rels, asgs, policy), policy.version)
    return True


async def replan_stale(pool: asyncpg.Pool, policy: Policy) -> int:
    """Re-plan persons whose pending timers carry another policy version; returns how many.

    Persons retention has no relationship or assignment for (timers seeded by an operator
    tool) are left as they are: there is nothing to plan them from.
    """
    replanned, after = 0, uuid.UUID(int=0)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            persons = await storage.stale_timed_persons(conn, policy.version, after, REPLAN_BATCH)
            for person_id in persons:
                await retime(conn, policy, person_id)
        if not persons:
            break
        replanned += len(persons)
        after = persons[-1]
    if replanned:
        log.warning("retention_timers_replanned", count=replanned, policy_version=policy.version)
    return replanned
