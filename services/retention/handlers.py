"""Event handlers of the retention service: one function per consumed topic.

Relationship and assignment events move a person's timers (R5–R7); consent events decide
between erasure and transfer at disposition time (R7, R8); contacts' outcome events and
every service's confirmations complete the evidence.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Awaitable, Callable

import asyncpg

from services.retention import storage
from services.retention.access import retention_slice
from services.retention.runtime import RetentionRuntime
from services.retention.timers import retime
from shared.access import answer_access_requests
from shared.messaging.consumer import EventContext, Parsed
from shared.logging import get_logger

log = get_logger(__name__)


async def _retime(ctx: EventContext, runtime: RetentionRuntime, person_id: uuid.UUID,
                  change: Callable[[], Awaitable[object]] | None = None) -> None:
    if not await retime(ctx.conn, runtime.policy, person_id, change):
        log.info("event_for_disposed_person_ignored", topic=ctx.topic, person_id=str(person_id))


def register(runtime: RetentionRuntime) -> None:
    async def on_contact_registered(ctx: EventContext) -> None:
        """A person entered the register: kept while the relationship lasts (R5)."""
        await storage.lock_person(ctx.conn, ctx.payload.person_id)

    async def on_relationship_started(ctx: EventContext) -> None:
        """R5: an open relationship keeps the data; a new one before the deadline reactivates."""
        p = ctx.payload
        await _retime(ctx, runtime, p.person_id,
                      lambda: storage.relationship_started(ctx.conn, p.person_id, p.relationship_id, p.started_at))

    async def on_relationship_ended(ctx: EventContext) -> None:
        """R6: passivate after the grace period unless an assignment is still open."""
        p = ctx.payload
        await _retime(ctx, runtime, p.person_id,
                      lambda: storage.relationship_ended(ctx.conn, p.person_id, p.relationship_id, p.ended_at))

    async def on_assignment_started(ctx: EventContext) -> None:
        """R6: an open assignment keeps the person active for it."""
        p = ctx.payload
        await _retime(ctx, runtime, p.person_id,
                      lambda: storage.assignment_started(ctx.conn, p.person_id, p.assignment_id, p.started_at))

    async def on_assignment_ended(ctx: EventContext) -> None:
        """R7: the final disposition counts from the end of the last assignment."""
        p = ctx.payload
        await _retime(ctx, runtime, p.person_id,
                      lambda: storage.assignment_ended(ctx.conn, p.person_id, p.assignment_id, p.ended_at))

    async def on_contact_reactivated(ctx: EventContext) -> None:
        """Contacts made the person active again: nothing pending may fire until things end anew."""
        person_id = ctx.payload.person_id
        state = await storage.lock_person(ctx.conn, person_id)
        if state is None or state == "disposing":
            return
        await storage.set_state(ctx.conn, person_id, "active")
        await storage.sync_deadlines(ctx.conn, person_id, [], runtime.policy.version)

    async def on_contact_passivated(ctx: EventContext) -> None:
        person_id = ctx.payload.person_id
        state = await storage.lock_person(ctx.conn, person_id)
        if state in ("active", "ended"):
            await storage.set_state(ctx.conn, person_id, "passive")
            await _retime(ctx, runtime, person_id)

    async def on_consent_granted(ctx: EventContext) -> None:
        """R7: a marketing permission makes the disposition a transfer (absent a ban)."""
        p = ctx.payload
        if await storage.lock_person(ctx.conn, p.person_id) is not None:
            await storage.grant_permission(ctx.conn, p.person_id, p.purpose.value, p.channel.value)

    async def on_consent_withdrawn(ctx: EventContext) -> None:
        p = ctx.payload
        if await storage.lock_person(ctx.conn, p.person_id) is not None:
            await storage.withdraw_permission(ctx.conn, p.person_id, p.purpose.value, p.channel.value)

    async def on_optout_registered(ctx: EventContext) -> None:
        """R8: a banned person is never transferred to the marketing register: erased instead."""
        p = ctx.payload
        if p.person_id is None:
            return  # contact points only: consent resolves them and publishes per person
        if await storage.lock_person(ctx.conn, p.person_id) is not None:
            await storage.register_ban(ctx.conn, p.person_id, [purpose.value for purpose in p.purposes])

    async def on_contact_transferred_to_marketing(ctx: EventContext) -> None:
        """R7/R9: the person lives on only in the marketing register: stop timing them."""
        await storage.forget_persons(ctx.conn, [ctx.payload.person_id], "transfer_to_marketing")

    async def on_contacts_erased(conn: asyncpg.Connection, batch: list[Parsed]) -> None:
        """R7: drop the personal tracking (keep the evidence) and confirm the erasure."""
        now = runtime.clock.now()
        erased = [p.payload for p in batch]
        await storage.forget_persons(conn, list({e.person_id for e in erased}), "erase")  # type: ignore[attr-defined]
        # The confirmation is recorded when it comes back on `disposition-confirmed`, like every
        # other service's: one consumer updates evidence, so the two bulk consumers never queue on its rows.
        await storage.confirm_erasures(conn, [e.person_id for e in erased], [e.command_id for e in erased],  # type: ignore[attr-defined]
                                       [p.envelope.correlation_id or str(p.envelope.id) for p in batch],
                                       source=runtime.name, now=now)

    async def on_dispositions_confirmed(conn: asyncpg.Connection, batch: list[Parsed]) -> None:
        """Evidence: when each service confirmed; complete when every expected one has."""
        confirmations = [p.payload for p in batch]
        await _record(conn, [(c.command_id, c.person_id, c.action, c.service, c.confirmed_at)  # type: ignore[attr-defined]
                             for c in confirmations], runtime.clock.now())

    for topic_name, handler in (
        ("contact-registered", on_contact_registered),
        ("relationship-started", on_relationship_started),
        ("relationship-ended", on_relationship_ended),
        ("assignment-started", on_assignment_started),
        ("assignment-ended", on_assignment_ended),
        ("contact-reactivated", on_contact_reactivated),
        ("contact-passivated", on_contact_passivated),
        ("consent-granted", on_consent_granted),
        ("consent-withdrawn", on_consent_withdrawn),
        ("optout-registered", on_optout_registered),
        ("contact-transferred-to-marketing", on_contact_transferred_to_marketing),
    ):
        runtime.subscribe(topic_name, handler)
    answer_access_requests(runtime, retention_slice)  # R12
    # Bulk topics: a mass disposition brings one erasure and several confirmations per person.
    runtime.subscribe_batch("contact-erased", on_contacts_erased)
    runtime.subscribe_batch("disposition-confirmed", on_dispositions_confirmed)


Confirmation = tuple[uuid.UUID | None, uuid.UUID, str, str, datetime]  # command, person, action, service, at


async def _record(conn: asyncpg.Connection, confirmations: list[Confirmation], now: datetime) -> None:
    """Confirmations without a command id belong to the person's latest command of that action."""
    missing = [(c[1], c[2]) for c in confirmations if c[0] is None]
    resolved = await storage.resolve_commands(conn, [m[0] for m in missing], [m[1] for m in missing]) if missing else {}
    rows = [(c[0] or resolved.get((c[1], c[2])), c[3], c[4]) for c in confirmations]
    rows = [r for r in rows if r[0] is not None]
    if len(rows) < len(confirmations):
        log.warning("confirmation_without_command", count=len(confirmations) - len(rows))
    if rows:
        await storage.record_confirmations(conn, [r[0] for r in rows], [r[1] for r in rows],
                                           [r[2] for r in rows], now)
