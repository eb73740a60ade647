"""Use cases shared by the HTTP API and the event handlers: each takes the unit of work
(`uow.store`: contacts' storage in the open transaction; `uow.outbox`), loads, decides with
`domain`, stores, and publishes. One function per thing the register does."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.contacts import domain
from services.contacts.domain import CommandOutcome, State
from shared.messaging.envelope import utcnow
from shared.errors import InvalidInput
from shared.messaging.events import (ContactErased, ContactPassivated, ContactReactivated, ContactRegistered,
                           ContactTransferredToMarketing, ContactUpdated, DispositionConfirmed)
from shared.logging import get_logger
from shared.messaging.handling import UnitOfWork

log = get_logger(__name__)
SERVICE = "contacts"


async def apply_suppression(uow: UnitOfWork, person_id: uuid.UUID, emails: list[str],
                            phones: list[str]) -> list[str]:
    """A contact point banned before (even of an erased person) bans this person at once (R4, R8)."""
    purposes = await uow.store.suppressed_purposes(emails, phones) if emails or phones else []
    if purposes:
        await uow.store.add_bans(person_id, purposes)
        log.info("suppression_applied", person_id=str(person_id), purposes=purposes)
    return purposes


async def keep_suppression(uow: UnitOfWork, person_id: uuid.UUID) -> None:
    """R8: before erasure, a banned person's contact points stay suppressed (as digests)."""
    bans = await uow.store.bans_of(person_id)
    person = await uow.store.get_person(person_id)
    if bans and person and (person["emails"] or person["phones"]):
        await uow.store.add_suppressed(person["emails"], person["phones"], bans)


async def check_organisation(uow: UnitOfWork, org_id: uuid.UUID | None) -> None:
    """An employer must exist (R3): 422 naming the field otherwise."""
    if org_id is not None and await uow.store.get_organisation(org_id) is None:
        raise InvalidInput("organisation_id: no such organisation", fields={"organisation_id": "no such organisation"})


async def register_person(uow: UnitOfWork, fields: dict[str, Any], *, source: str,
                          legal_basis: str, purposes: list[str], external_ref: str | None = None) -> uuid.UUID:
    """A new person enters the register as a prospect (R2, R4); consent hears of its contact points."""
    person_id = uuid.uuid4()
    await uow.store.insert_person(person_id, fields, source=source, legal_basis=legal_basis,
                                purposes=purposes, state=State.prospect, external_ref=external_ref)
    await apply_suppression(uow, person_id, fields.get("emails") or [], fields.get("phones") or [])
    await uow.outbox.add(ContactRegistered(person_id=person_id, emails=fields.get("emails") or [],
                                    phones=fields.get("phones") or [], source=source,
                                    lifecycle_state=State.prospect.value,
                                    organisation_id=fields.get("organisation_id")))
    log.info("person_registered", person_id=str(person_id))
    return person_id


async def change_person(uow: UnitOfWork, person: dict[str, Any], changes: dict[str, Any],
                        *, source: str, cause: str, rectification_id: uuid.UUID | None = None) -> list[str]:
    """Apply the fields that really change, record their source (R4) and publish them (R14)."""
    changed = domain.changed_fields(person, changes)
    if not changed:
        return []
    await uow.store.update_person(person["id"], {f: changes[f] for f in changed}, source)
    emails = changes.get("emails", person["emails"])
    phones = changes.get("phones", person["phones"])
    await apply_suppression(uow, person["id"], emails, phones)
    await uow.outbox.add(ContactUpdated(person_id=person["id"], changed_fields=changed, cause=cause,
                                 rectification_id=rectification_id, emails=emails, phones=phones))
    return changed


async def connection_started(uow: UnitOfWork, person_id: uuid.UUID, kind: str) -> State:
    """A relationship or assignment began: prospect → active, or reactivation (SPEC §3)."""
    person = await uow.store.get_person(person_id, for_update=True)
    before = State(person["lifecycle_state"])
    after = domain.on_connection_started(before, kind)
    if after is not before:
        await uow.store.set_state(person_id, after)
    if domain.is_reactivation(before, after):
        await uow.outbox.add(ContactReactivated(person_id=person_id))
        log.info("person_reactivated", person_id=str(person_id), previous=before.value)
    return after


async def connection_ended(uow: UnitOfWork, person_id: uuid.UUID) -> State:
    """The last open relationship or assignment ended: the person's connection has ended (R5)."""
    person = await uow.store.get_person(person_id, for_update=True)
    before = State(person["lifecycle_state"])
    after = domain.on_connection_ended(before, await uow.store.open_connections(person_id))
    if after is not before:
        await uow.store.set_state(person_id, after)
    return after


async def current_state(uow: UnitOfWork, person_id: uuid.UUID) -> State | None:
    person = await uow.store.get_person(person_id, for_update=True)
    if person is not None:
        return State(person["lifecycle_state"])
    return State.erased if await uow.store.is_erased(person_id) else None


def _confirmation(command_id: uuid.UUID, person_id: uuid.UUID, action: str) -> DispositionConfirmed:
    return DispositionConfirmed(command_id=command_id, person_id=person_id, service=SERVICE, action=action,
                                confirmed_at=utcnow())


async def passivate(uow: UnitOfWork, person_id: uuid.UUID, state: State | None,
                    command_id: uuid.UUID) -> CommandOutcome:
    """R6: from now on only the register owner reads this person."""
    outcome = domain.passivation_outcome(state)
    if outcome is CommandOutcome.apply:
        await uow.store.set_state(person_id, State.passive)
        await uow.outbox.add(ContactPassivated(person_id=person_id, command_id=command_id))
    if outcome is not CommandOutcome.stale:
        await uow.outbox.add(_confirmation(command_id, person_id, "passivate"))
    return outcome


async def dispose(uow: UnitOfWork, person_id: uuid.UUID, state: State | None,
                  command_id: uuid.UUID, action: str) -> CommandOutcome:
    """R7: erase everything, or keep only what the marketing register needs."""
    decided = action == "erase" and await uow.store.erasure_decided(person_id)  # Art. 17, issue 14
    outcome = domain.disposition_outcome(state, action, erasure_decided=decided)
    if outcome is CommandOutcome.apply and action == "erase":
        await keep_suppression(uow, person_id)
        emails, phones = await uow.store.contact_points_of(person_id)  # what its dead letters may name
        await uow.outbox.erase_copies([person_id], await uow.store.message_keys_of(person_id),
                                      emails=emails, phones=phones)
        await uow.store.erase_person(person_id, command_id)
        await uow.outbox.add(ContactErased(person_id=person_id, command_id=command_id,
                                           naming=uow.outbox.naming_tokens(emails, phones)))
    elif outcome is CommandOutcome.apply:
        await uow.store.keep_marketing_data_only(person_id)
        await uow.outbox.add(ContactTransferredToMarketing(person_id=person_id, command_id=command_id))
    if outcome is not CommandOutcome.stale:
        await uow.outbox.add(_confirmation(command_id, person_id, action))
    return outcome


def at_or_now(value: datetime | None) -> datetime:
    return value or utcnow()
