"""Event handlers of the retention service: one function per consumed topic, each taking the
event and the unit of work (`ctx.store`: retention's storage in the consumer's transaction;
`ctx.outbox`). `register` subscribes them.

Relationship and assignment events move a person's timers (R5–R7); consent events decide
between erasure and transfer at disposition time (R7, R8); contacts' outcome events and
every service's confirmations complete the evidence. Retention follows the lifecycle states
contacts confirms (`contact-passivated`, `contact-reactivated`, `contact-erased`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from services.retention.access import slice_for
from services.retention.domain import DISPOSING, Clock, Policy
from services.retention.runtime import RetentionRuntime
from services.retention.timers import retime
from shared.access import answer_access_requests
from shared.lifecycle import State
from shared.logging import get_logger
from shared.messaging.handling import EventContext, UnitOfWork
from shared.messaging.parsing import Parsed
from shared.messaging.events import DispositionConfirmed

log = get_logger(__name__)


@dataclass(frozen=True)
class Rules:
    """What the handlers need of the service besides the unit of work."""

    policy: Policy
    clock: Clock
    service: str = "retention"


async def _retime(ctx: EventContext, rules: Rules, person_id: uuid.UUID, change: Any = None) -> None:
    if not await retime(ctx.store, rules.policy, person_id, change):
        log.info("event_for_disposed_person_ignored", topic=ctx.topic, person_id=str(person_id))


async def on_contact_registered(ctx: EventContext, rules: Rules) -> None:
    """A person entered the register: kept while the relationship lasts (R5)."""
    await ctx.store.lock_person(ctx.payload.person_id)


async def on_relationship_started(ctx: EventContext, rules: Rules) -> None:
    """R5: an open relationship keeps the data; a new one before the deadline reactivates."""
    p = ctx.payload
    await _retime(ctx, rules, p.person_id, lambda: ctx.store.relationship_started(p.person_id, p.relationship_id, p.started_at))


async def on_relationship_ended(ctx: EventContext, rules: Rules) -> None:
    """R6: passivate after the grace period unless an assignment is still open. An end whose
    start has not arrived yet is kept all the same: the start, when it comes, fills it in."""
    p = ctx.payload
    await _retime(ctx, rules, p.person_id, lambda: ctx.store.relationship_ended(p.person_id, p.relationship_id, p.ended_at))


async def on_assignment_started(ctx: EventContext, rules: Rules) -> None:
    """R6: an open assignment keeps the person active for it."""
    p = ctx.payload
    await _retime(ctx, rules, p.person_id, lambda: ctx.store.assignment_started(p.person_id, p.assignment_id, p.started_at))


async def on_assignment_ended(ctx: EventContext, rules: Rules) -> None:
    """R7: the final disposition counts from the end of the last assignment."""
    p = ctx.payload
    await _retime(ctx, rules, p.person_id, lambda: ctx.store.assignment_ended(p.person_id, p.assignment_id, p.ended_at))


async def on_contact_reactivated(ctx: EventContext, rules: Rules) -> None:
    """Contacts made the person active again because a relationship or assignment started,
    which retention hears of on its own topic too. The timers follow the spans retention
    holds: the announcement may arrive before that start or after its end, and either way
    both services converge on the state the spans give."""
    await _retime(ctx, rules, ctx.payload.person_id)


async def on_contact_passivated(ctx: EventContext, rules: Rules) -> None:
    """R6: contacts confirmed the passivation: the person is passive from now on."""
    person_id = ctx.payload.person_id
    state = await ctx.store.lock_person(person_id)
    if state in (State.prospect, State.active, State.ended):
        await ctx.store.set_state(person_id, State.passive)
        await _retime(ctx, rules, person_id)


async def on_consent_granted(ctx: EventContext, rules: Rules) -> None:
    """R7: a marketing permission makes the disposition a transfer (absent a ban)."""
    p = ctx.payload
    if await ctx.store.lock_person(p.person_id) is not None:
        await ctx.store.grant_permission(p.person_id, p.purpose.value, p.channel.value)


async def on_consent_withdrawn(ctx: EventContext, rules: Rules) -> None:
    p = ctx.payload
    if await ctx.store.lock_person(p.person_id) is not None:
        await ctx.store.withdraw_permission(p.person_id, p.purpose.value, p.channel.value)


async def on_optout_registered(ctx: EventContext, rules: Rules) -> None:
    """R8: a banned person is never transferred to the marketing register: erased instead."""
    p = ctx.payload
    if p.person_id is None:
        return  # contact points only: consent resolves them and publishes per person
    if await ctx.store.lock_person(p.person_id) is not None:
        await ctx.store.register_ban(p.person_id, [purpose.value for purpose in p.purposes])


async def on_erasure_requested(ctx: EventContext, rules: Rules) -> None:
    """Art. 17, issue 14: the register owner decided the person's erasure request `erase`. The
    disposition becomes an erasure due now; the scheduler's next pass commands it (a legal hold
    in force defers it, Art. 17(3)) and contacts erases. A person already being disposed of or
    gone needs nothing more."""
    p = ctx.payload
    state = await ctx.store.lock_person(p.person_id)
    if state is None or state == DISPOSING:
        log.info("erasure_request_for_disposed_person_ignored", person_id=str(p.person_id), state=state)
        return
    await ctx.store.request_erasure(p.person_id, p.request_id, rules.clock.now())
    await _retime(ctx, rules, p.person_id)


async def on_contact_transferred_to_marketing(ctx: EventContext, rules: Rules) -> None:
    """R7/R9: the person lives on only in the marketing register: stop timing them."""
    await ctx.store.forget_persons([ctx.payload.person_id], "transfer_to_marketing")


async def on_contacts_erased(uow: UnitOfWork, batch: list[Parsed], rules: Rules) -> None:
    """R7: drop the personal tracking (keep the evidence) and confirm the erasure.

    The confirmation is recorded when it comes back on `disposition-confirmed`, like every
    other service's: one consumer updates evidence, so the two bulk consumers never queue on
    its rows."""
    now = rules.clock.now()
    erased: list[Any] = [p.payload for p in batch]  # contact-erased payloads
    await uow.store.forget_persons(list({e.person_id for e in erased}), "erase")
    await uow.outbox.erase_copies(sorted({e.person_id for e in erased}),
                                  naming_digests=sorted({t for e in erased for t in e.naming}))
    await uow.outbox.add_all(
        [DispositionConfirmed(command_id=e.command_id, person_id=e.person_id, service=rules.service,
                              action="erase", confirmed_at=now) for e in erased],
        correlation_ids=[p.envelope.correlation_id or str(p.envelope.id) for p in batch])


Confirmation = tuple[uuid.UUID | None, uuid.UUID, str, str, datetime]  # command, person, action, service, at


async def on_dispositions_confirmed(uow: UnitOfWork, batch: list[Parsed], rules: Rules) -> None:
    """Evidence: when each service confirmed; complete when every expected one has, and then,
    for an erasure, the person's data keys are destroyed as its last step (issue 15).
    Confirmations without a command id belong to the person's latest command of that action."""
    confirmations: list[Confirmation] = [(c.command_id, c.person_id, c.action, c.service, c.confirmed_at)  # type: ignore[attr-defined]
                                         for c in (p.payload for p in batch)]
    missing = [(c[1], c[2]) for c in confirmations if c[0] is None]
    resolved = await uow.store.resolve_commands([m[0] for m in missing], [m[1] for m in missing]) if missing else {}
    rows = [(c[0] or resolved.get((c[1], c[2])), c[3], c[4]) for c in confirmations]
    rows = [r for r in rows if r[0] is not None]
    if len(rows) < len(confirmations):
        log.warning("confirmation_without_command", count=len(confirmations) - len(rows))
    if rows:
        await uow.store.record_confirmations([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                             rules.clock.now())
        shredded = await uow.store.shred_completed_erasures(sorted({r[0] for r in rows if r[0] is not None}))
        if shredded:
            log.info("data_keys_destroyed", persons=len(shredded))


PER_EVENT = {
    "contact-registered": on_contact_registered,
    "relationship-started": on_relationship_started,
    "relationship-ended": on_relationship_ended,
    "assignment-started": on_assignment_started,
    "assignment-ended": on_assignment_ended,
    "contact-reactivated": on_contact_reactivated,
    "contact-passivated": on_contact_passivated,
    "consent-granted": on_consent_granted,
    "consent-withdrawn": on_consent_withdrawn,
    "optout-registered": on_optout_registered,
    "contact-transferred-to-marketing": on_contact_transferred_to_marketing,
    "erasure-requested": on_erasure_requested,
}
# Bulk topics: a mass disposition brings one erasure and several confirmations per person.
BULK = {"contact-erased": on_contacts_erased, "disposition-confirmed": on_dispositions_confirmed}


class _LiveRules:
    """The runtime's rules read at each event: tests replace the clock of a running service."""

    def __init__(self, runtime: RetentionRuntime) -> None:
        self._runtime = runtime

    @property
    def policy(self) -> Policy:
        return self._runtime.policy

    @property
    def clock(self) -> Clock:
        return self._runtime.clock

    @property
    def service(self) -> str:
        return self._runtime.name

    @property
    def confirmation_timeout_s(self) -> float:
        return self._runtime.settings.retention_confirmation_timeout_s


def register(runtime: RetentionRuntime) -> None:
    rules: Any = _LiveRules(runtime)
    for topic_name, handler in PER_EVENT.items():
        runtime.subscribe(topic_name, partial(handler, rules=rules))
    answer_access_requests(runtime, slice_for(rules))  # R12, issue 14
    for topic_name, bulk in BULK.items():
        runtime.subscribe_batch(topic_name, partial(bulk, rules=rules))
