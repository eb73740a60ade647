"""Event handlers and commands of the consent service: parse → domain → store → outbox, each
through the unit of work (`uow.store`: consent's storage in the transaction; `uow.outbox`).

Each consumed event is one short transaction (the consumer's), so a ban published on
`optout-registered` is effective for checks as soon as it commits (R13: everywhere at once).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from functools import lru_cache, partial
from typing import Sequence

from services.consent import access
from services.consent.domain import Status
from services.consent.settings import ConsentSettings
from services.consent.storage import Change, Evidence
from shared.access import answer_access_requests
from shared.messaging.handling import EventContext, UnitOfWork
from shared.messaging.envelope import utcnow
from shared.errors import Rejected
from shared.messaging.events import (
    Channel, ConsentWithdrawn, ContactErased, ContactPassivated, ContactReactivated, ContactRegistered,
    ContactTransferredToMarketing, ContactUpdated, DispositionConfirmed, OptoutRegistered, Purpose,
    SubjectTokensRevoked,
)
from shared.logging import get_logger
from shared.privacy import SuppressionChains
from shared.privacy.config import suppression_keyring
from shared.privacy.naming import stored_tokens
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
SERVICE = "consent"
SUPPRESSION_SOURCE = "suppression-list"


@lru_cache(maxsize=4)
def _hasher(_schema: str, current: str, old: str, ttl_s: float) -> SuppressionChains:
    return SuppressionChains(suppression_keyring(current, old), ttl_s)


def hasher_for(settings: ConsentSettings) -> SuppressionChains:
    """One digester per key set, its HMAC states computed once (batch checks hash 100,000 points)."""
    return _hasher(settings.schema, settings.rekisteri_suppression_key, settings.rekisteri_suppression_old_keys,
                   settings.suppression_chain_ttl_s)


# ---- commands shared by the API and the event handlers ---------------------------------

async def register_ban(uow: UnitOfWork, hasher: SuppressionChains, *, person_id: uuid.UUID | None,
                       emails: Sequence[str], phones: Sequence[str], purposes: Sequence[str],
                       channels: Sequence[str], evidence: Evidence) -> list[Change]:
    """Record a ban (R13) and keep the contact points needed to honour it (R8). A ban always
    wins: it overrides a permission, which is then reported withdrawn."""
    points = (await uow.store.suppression_digests(hasher)).points(list(emails), list(phones))
    persons: set[uuid.UUID] = set()
    if person_id is not None and points and await uow.store.is_erased(person_id):
        person_id = None  # erased (R7): only the suppression list may learn from this ban
    if person_id is not None:
        persons.add(person_id)
        await uow.store.link_contact_points(person_id, points)
    if points:
        persons.update(await uow.store.persons_with([p.digest for p in points]))
    triples = [(p, pu, ch) for p in sorted(persons) for pu in purposes for ch in channels]
    changes = await uow.store.record_bans(triples, evidence)
    await uow.store.suppress_digests(points, purposes, channels, evidence.source)
    for change in changes:
        if change.previous == Status.granted:
            await uow.outbox.add(ConsentWithdrawn(person_id=change.person_id, purpose=Purpose(change.purpose),
                                           channel=Channel(change.channel), source=evidence.source,
                                           method=evidence.method, actor=evidence.actor))
    return changes


async def match_suppression_list(uow: UnitOfWork, hasher: SuppressionChains, person_id: uuid.UUID,
                                 emails: Sequence[str], phones: Sequence[str]) -> list[Change]:
    """A (re-)registered person whose address is suppressed gets the bans back under the new
    id, announced as `optout-registered`: a B2B re-import never resurrects marketing (R4, R8)."""
    if await uow.store.is_erased(person_id):
        return []  # a late event about an erased person must not bring its data back (R7)
    points = (await uow.store.suppression_digests(hasher)).points(list(emails), list(phones))
    await uow.store.link_contact_points(person_id, points)
    await uow.store.suppress_points_of([person_id], SUPPRESSION_SOURCE)  # new addresses of a banned person
    pairs = await uow.store.suppressed_pairs_of(person_id)
    evidence = Evidence(source=SUPPRESSION_SOURCE, method="suppression_list_match", actor=SERVICE)
    changes = await uow.store.record_bans([(person_id, pu, ch) for pu, ch in pairs], evidence)
    by_purpose: dict[str, list[str]] = defaultdict(list)
    for change in changes:
        by_purpose[change.purpose].append(change.channel)
    for purpose, channels in sorted(by_purpose.items()):
        await uow.outbox.add(OptoutRegistered(person_id=person_id, purposes=[Purpose(purpose)],
                                       channels=[Channel(c) for c in sorted(channels)], source=SUPPRESSION_SOURCE,
                                       method="suppression_list_match", actor=SERVICE))
    if changes:
        log.info("suppression_list_matched", person_id=str(person_id), bans=len(changes))
    return changes


# ---- consumed events ---------------------------------------------------------------------

async def on_optout_registered(ctx: EventContext[OptoutRegistered], hasher: SuppressionChains) -> None:
    """A ban from a web form, marketing tool or staff system (R8, R13)."""
    if ctx.envelope.source == SERVICE:
        return  # our own announcement: applied in the transaction that published it
    p = ctx.payload
    if p.person_id is None and not p.emails and not p.phones:
        raise Rejected("invalid data: person_id, emails or phones is required")
    evidence = Evidence(source=p.source, method=p.method, actor=p.actor, notice_version=p.notice_version)
    changes = await register_ban(ctx.uow, hasher, person_id=p.person_id, emails=p.emails, phones=p.phones,
                                 purposes=[x.value for x in p.purposes], channels=[c.value for c in p.channels],
                                 evidence=evidence)
    log.info("optout_applied", event_id=str(ctx.envelope.id),
             person_id=str(p.person_id) if p.person_id else None, new_bans=len(changes))


async def on_contact_registered(ctx: EventContext[ContactRegistered], hasher: SuppressionChains) -> None:
    p = ctx.payload
    await match_suppression_list(ctx.uow, hasher, p.person_id, p.emails, p.phones)


async def on_contact_updated(ctx: EventContext[ContactUpdated], hasher: SuppressionChains) -> None:
    p = ctx.payload
    await match_suppression_list(ctx.uow, hasher, p.person_id, p.emails, p.phones)


async def on_contact_erased(ctx: EventContext[ContactErased]) -> None:
    """Erase all but the suppression list (R7, R8), and confirm to retention."""
    p = ctx.payload
    # A ban and the contact points it needs may have committed in either order (an API ban racing
    # a registration); at erasure both are known, so the suppression list gets every point (R8).
    await ctx.store.suppress_points_of([p.person_id], "erasure")
    # Its dead letters go by its id or by the digests consent keeps of its contact points (H1).
    await ctx.outbox.erase_copies([p.person_id], naming_digests=[
        *p.naming, *stored_tokens(await ctx.store.stored_digests_of([p.person_id]))])
    await ctx.store.erase_person(p.person_id)
    await ctx.outbox.add(DispositionConfirmed(command_id=p.command_id, person_id=p.person_id, service=SERVICE,
                                           action="erase", confirmed_at=utcnow()))
    log.info("person_erased", person_id=str(p.person_id))


async def on_contact_transferred_to_marketing(ctx: EventContext[ContactTransferredToMarketing]) -> None:
    """The person moves to the marketing register (R7, R9); permissions and bans stay."""
    p = ctx.payload
    await ctx.store.add_to_marketing_register(p.person_id)
    await ctx.outbox.add(DispositionConfirmed(command_id=p.command_id, person_id=p.person_id, service=SERVICE,
                                           action="transfer_to_marketing", confirmed_at=utcnow()))


async def on_contact_passivated(ctx: EventContext[ContactPassivated]) -> None:
    """R6: from now on only the register owner reads this person's consents."""
    await ctx.store.set_passive(ctx.payload.person_id, True)


async def on_contact_reactivated(ctx: EventContext[ContactReactivated]) -> None:
    await ctx.store.set_passive(ctx.payload.person_id, False)


async def on_subject_tokens_revoked(ctx: EventContext[SubjectTokensRevoked]) -> None:
    """Contacts revoked a person's self-service tokens: consent refuses them too (issue 16)."""
    p = ctx.payload
    await ctx.store.raise_token_floor(p.person_id, p.token_version, p.disabled)


def register(runtime: ServiceRuntime) -> None:
    hasher = hasher_for(runtime.settings)  # type: ignore[arg-type]
    runtime.subscribe("optout-registered", partial(on_optout_registered, hasher=hasher))
    runtime.subscribe("contact-registered", partial(on_contact_registered, hasher=hasher))
    runtime.subscribe("contact-updated", partial(on_contact_updated, hasher=hasher))
    runtime.subscribe("contact-erased", on_contact_erased)
    runtime.subscribe("contact-transferred-to-marketing", on_contact_transferred_to_marketing)
    runtime.subscribe("contact-passivated", on_contact_passivated)
    runtime.subscribe("contact-reactivated", on_contact_reactivated)
    runtime.subscribe("subject-tokens-revoked", on_subject_tokens_revoked)
    answer_access_requests(runtime, access.slice_for(hasher))  # R12

