"""Event handlers of the contacts service: one function per consumed topic.

Relationship and assignment topics carry contacts' own API changes too: those events are
already applied, so a handler skips what contacts itself published (no loop, no re-publish).
"""
from __future__ import annotations

from services.contacts import access, domain, service
from shared.messaging.handling import EventContext
from shared.errors import Rejected
from shared.messaging.events import ContactUpserted
from shared.logging import get_logger
from shared.privacy import email_or_none, phone_or_none
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def _own(ctx: EventContext) -> bool:
    return ctx.envelope.source == ctx.service


def _normalised_contact_points(payload: ContactUpserted) -> tuple[list[str], list[str]]:
    try:
        emails = domain.unique([domain.normalise_email(e) for e in payload.emails])
    except ValueError as exc:
        raise Rejected(f"emails: {exc}") from None
    try:
        phones = domain.unique([domain.normalise_phone(p) for p in payload.phones])
    except ValueError as exc:
        raise Rejected(f"phones: {exc}") from None
    return emails, phones


async def on_contact_upserted(ctx: EventContext) -> None:
    """A person from CRM or a register import (R4). Known by external_ref → updated; else
    registered. A banned contact point bans the new person at once (R8: no resurrection)."""
    p: ContactUpserted = ctx.payload
    emails, phones = _normalised_contact_points(p)
    fields = {"first_name": p.first_name, "last_name": p.last_name, "title": p.title,
              "emails": emails, "phones": phones}
    if p.organisation_business_id:
        try:
            business_id = domain.normalise_business_id(p.organisation_business_id)
        except ValueError as exc:
            raise Rejected(f"organisation_business_id: {exc}") from None
        fields["organisation_id"] = await ctx.store.ensure_organisation(business_id, p.organisation_name,
                                                                      p.source.value)
    existing = await ctx.store.person_by_external_ref(p.external_ref)
    if existing is None:
        await service.register_person(ctx.uow, fields, source=p.source.value,
                                      legal_basis=p.legal_basis.value, purposes=[x.value for x in p.purposes],
                                      external_ref=p.external_ref)
        return
    # An import adds contact points, never removes them: what the person told us directly stays.
    changes = {k: v for k, v in fields.items() if v not in (None, [])}
    for points in ("emails", "phones"):
        if points in changes:
            changes[points] = domain.unique([*existing[points], *changes[points]])
    await service.change_person(ctx.uow, existing, changes, source=p.source.value, cause="import")
    await ctx.store.add_purposes(existing["id"], [x.value for x in p.purposes])


async def _known_state(ctx: EventContext) -> domain.State | None:
    """The person's state; None (event skipped) after the final disposition (erased, or moved to
    the marketing register, whose connections are gone); Rejected if the person was never known."""
    state = await service.current_state(ctx.uow, ctx.payload.person_id)
    if state is None:
        raise Rejected("person_id: no such person in contacts")
    if state in domain.FINAL_STATES:
        log.info("event_after_disposition_skipped", topic=ctx.topic, person_id=str(ctx.payload.person_id),
                 state=state.value)
        return None
    return state


async def on_relationship_started(ctx: EventContext) -> None:
    """R5: a relationship keeps or makes the person active; reactivates an ended/passive one."""
    if _own(ctx) or await _known_state(ctx) is None:
        return
    p = ctx.payload
    if await ctx.store.insert_relationship(p.relationship_id, p.person_id, p.organisation_id, p.kind,
                                         p.started_at, "service_event"):
        await service.connection_started(ctx.uow, p.person_id, p.kind)


async def on_relationship_ended(ctx: EventContext) -> None:
    """R6: the end of the last connection ends the person's relationship with the company.
    Events of one person arrive in any order across topics; contacts converges either way."""
    if _own(ctx) or await _known_state(ctx) is None:
        return
    p = ctx.payload
    relationship = await ctx.store.get_relationship(p.relationship_id)
    if relationship is not None and relationship["person_id"] != p.person_id:
        raise Rejected("relationship_id: the relationship belongs to another person")
    if relationship is None:  # the end came first (another topic): recorded now, its start fills it in
        await ctx.store.end_relationship_seen_first(p.relationship_id, p.person_id, p.ended_at, "service_event")
        await service.connection_ended(ctx.uow, p.person_id)
    elif await ctx.store.end_relationship(p.relationship_id, p.ended_at):
        await service.connection_ended(ctx.uow, p.person_id)


async def on_assignment_started(ctx: EventContext) -> None:
    """P2: a participant of an assignment is active for as long as it lasts."""
    if _own(ctx) or await _known_state(ctx) is None:
        return
    p = ctx.payload
    await ctx.store.ensure_assignment(p.assignment_id, p.given_by, None, p.started_at, "service_event")
    if await ctx.store.add_participant(p.assignment_id, p.person_id, p.started_at):
        await service.connection_started(ctx.uow, p.person_id, "assignment")


async def on_assignment_ended(ctx: EventContext) -> None:
    """R7 counts from the end of the last assignment (retention times it; contacts tracks state)."""
    if _own(ctx) or await _known_state(ctx) is None:
        return
    p = ctx.payload
    if await ctx.store.end_participation(p.assignment_id, p.person_id, p.ended_at):
        await service.connection_ended(ctx.uow, p.person_id)
    elif await ctx.store.end_participation_seen_first(p.assignment_id, p.person_id, p.ended_at):
        await service.connection_ended(ctx.uow, p.person_id)  # the end came first: its start fills it in


async def on_passivation_commanded(ctx: EventContext) -> None:
    """R6: retention's command; confirmed with disposition-confirmed (stale commands ignored,
    a person never held here confirmed: nothing to passivate)."""
    p = ctx.payload
    state = await service.current_state(ctx.uow, p.person_id)
    outcome = await service.passivate(ctx.uow, p.person_id, state, p.command_id)
    log.info("passivation_command", person_id=str(p.person_id), command_id=str(p.command_id), outcome=outcome.value)


async def on_disposition_commanded(ctx: EventContext) -> None:
    """R7: erase, or transfer to the marketing register; confirmed with disposition-confirmed
    (a person never held here too: nothing of them is held, which is what the command asks)."""
    p = ctx.payload
    state = await service.current_state(ctx.uow, p.person_id)
    outcome = await service.dispose(ctx.uow, p.person_id, state, p.command_id, p.action)
    log.info("disposition_command", person_id=str(p.person_id), command_id=str(p.command_id),
             action=p.action, outcome=outcome.value)


async def on_optout_registered(ctx: EventContext) -> None:
    """R8, R13: a ban excludes the person from marketing exports at once; the banned contact
    points are kept as digests so a later import of them is banned too."""
    p = ctx.payload
    purposes = [x.value for x in p.purposes]
    emails = [e for e in map(email_or_none, p.emails) if e is not None]  # the one normal form (SPEC §9)
    phones = [x for x in map(phone_or_none, p.phones) if x is not None]
    points = [*emails, *phones]
    if points:
        await ctx.store.add_suppressed(emails, phones, purposes)
    persons = set(await ctx.store.persons_with_contact_points(emails, phones)) if points else set()
    if p.person_id is not None and await ctx.store.get_person(p.person_id) is not None:
        persons.add(p.person_id)
    for person_id in persons:
        await ctx.store.add_bans(person_id, purposes)
    log.info("optout_recorded", person_id=str(p.person_id) if p.person_id else None, persons=len(persons))


def register(runtime: ServiceRuntime) -> None:
    runtime.subscribe("contact-upserted", on_contact_upserted)
    runtime.subscribe("relationship-started", on_relationship_started)
    runtime.subscribe("relationship-ended", on_relationship_ended)
    runtime.subscribe("assignment-started", on_assignment_started)
    runtime.subscribe("assignment-ended", on_assignment_ended)
    runtime.subscribe("passivation-commanded", on_passivation_commanded)
    runtime.subscribe("disposition-commanded", on_disposition_commanded)
    runtime.subscribe("optout-registered", on_optout_registered)
    runtime.subscribe("access-report-part", access.on_access_report_part)
