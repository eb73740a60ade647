"""Re-planning one person's timers from what retention knows of them (R5–R7).

Event handlers call `retime` after recording a relationship or assignment fact; at start-up
`replan_stale` re-plans every pending timer that an earlier rule or policy set, so a corrected
rule (or a shorter configured period) applies to people already waiting, not only to new ones.
"""
from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable

import asyncpg

from services.retention import storage
from services.retention.domain import DISPOSING, Policy, plan_deadlines
from shared.db import BoundStore
from shared.lifecycle import State, after_spans
from shared.logging import get_logger

log = get_logger(__name__)

REPLAN_BATCH = 500


async def retime(store: Any, policy: Policy, person_id: uuid.UUID,
                 change: Callable[[], Awaitable[object]] | None = None) -> bool:
    """Apply a fact under the person lock and re-plan the timers; False if already disposed of.

    The state follows the shared lifecycle rules from the person's spans: an open span
    reactivates an ended or passive person (pending timers cancelled), the last end ends them."""
    state = await store.lock_person(person_id)
    if state is None:
        return False
    if change is not None:
        await change()
    rels, asgs = await store.spans(person_id)
    spans = [*rels, *asgs]
    if state != DISPOSING:
        state = after_spans(State(state), sum(s.ended_at is None for s in spans), bool(spans))
        await store.set_state(person_id, state)
    erasure = await store.erasure_request(person_id)
    await store.sync_deadlines(person_id, plan_deadlines(state, rels, asgs, policy, erasure), policy.version)
    return True


async def replan_stale(pool: asyncpg.Pool, policy: Policy) -> int:
    """Re-plan persons whose pending timers carry another policy version; returns how many.

    Persons retention has no relationship or assignment for (timers seeded by an operator
    tool) are left as they are: there is nothing to plan them from.
    """
    replanned, after = 0, uuid.UUID(int=0)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            store = BoundStore(storage, conn)
            persons = await store.stale_timed_persons(policy.version, after, REPLAN_BATCH)
            for person_id in persons:
                await retime(store, policy, person_id)
        if not persons:
            break
        replanned += len(persons)
        after = persons[-1]
    if replanned:
        log.warning("retention_timers_replanned", count=replanned, policy_version=policy.version)
    return replanned
