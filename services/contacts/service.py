"""Use cases shared by the HTTP API and the event handlers: each takes the open transaction
and a `publish` function (the outbox, in that transaction), loads, decides with `domain`,
stores, and publishes. One function per thing the register does."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Awaitable, Callable

import asyncpg

from services.contacts import domain, storage
from services.contacts.domain import CommandOutcome, State
from shared.messaging.envelope import utcnow
from shared.errors import InvalidInput
from shared.messaging.events import (ContactErased, ContactPassivated, ContactReactivated, ContactRegistered,
                           ContactTransferredToMarketing, ContactUpdated, DispositionConfirmed, Payload)
from shared.logging import get_logger
from shared.messaging.outbox import add_event

log = get_logger(__name__)
Publish = Callable[[Payload], Awaitable[Any]]
SERVICE = "contacts"


async def apply_suppression(conn: asyncpg.Connection, person_id: uuid.UUID, emails: list[str],
                            phones: list[str]) -> list[str]:
    """A contact point banned before (even of an erased person) bans this person at once (R4, R8)."""
    purposes = await storage.suppressed_purposes(conn, emails, phones) if emails or phones else []
    if purposes:
        await storage.add_bans(conn, person_id, purposes)
        log.info("suppression_applied", person_id=str(person_id), purposes=purposes)
    return purposes


async def keep_suppression(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """R8: before erasure, a banned person's contact points stay suppressed (as digests)."""
    bans = await storage.bans_of(conn, person_id)
    person = await storage.get_person(conn, person_id)
    if bans and person and (person["emails"] or person["phones"]):
        await storage.add_suppressed(conn, person["emails"], person["phones"], bans)


async def check_organisation(conn: asyncpg.Connection, org_id: uuid.UUID | None) -> None:
    """An employer must exist (R3): 422 naming the field otherwise."""
    if org_id is not None and await storage.get_organisation(conn, org_id) is None:
        raise InvalidInput("organisation_id: no such organisation", fields={"organisation_id": "no such organisation"})


async def register_person(conn: asyncpg.Connection, publish: Publish, fields: dict[str, Any], *, source: str,
                          legal_basis: str, purposes: list[str], external_ref: str | None = None) -> uuid.UUID:
    """A new person enters the register as a prospect (R2, R4); consent hears of its contact points."""
    person_id = uuid.uuid4()
    await storage.insert_person(conn, person_id, fields, source=source, legal_basis=legal_basis,
                                purposes=purposes, state=State.prospect, external_ref=external_ref)
    await apply_suppression(conn, person_id, fields.get("emails") or [], fields.get("phones") or [])
    await publish(ContactRegistered(person_id=person_id, emails=fields.get("emails") or [],
                                    phones=fields.get("phones") or [], source=source,
                                    lifecycle_state=State.prospect.value,
                                    organisation_id=fields.get("organisation_id")))
    log.info("person_registered", person_id=str(person_id))
    return person_id


async def change_person(conn: asyncpg.Connection, publish: Publish, person: dict[str, Any], changes: dict[str, Any],
                        *, source: str, cause: str, rectification_id: uuid.UUID | None = None) -> list[str]:
    """Apply the fields that really change, record their source (R4) and publish them (R14)."""
    changed = domain.changed_fields(person, changes)
    if not changed:
        return []
    await storage.update_person(conn, person["id"], {f: changes[f] for f in changed}, source)
    emails = changes.get("emails", person["emails"])
    phones = changes.get("phones", person["phones"])
    await apply_suppression(conn, person["id"], emails, phones)
    await publish(ContactUpdated(person_id=person["id"], changed_fields=changed, cause=cause,
                                 rectification_id=rectification_id, emails=emails, phones=phones))
    return changed


async def connection_started(conn: asyncpg.Connection, publish: Publish, person_id: uuid.UUID, kind: str) -> State:
    """A relationship or assignment began: prospect → active, or reactivation (SPEC §3)."""
    person = await storage.get_person(conn, person_id, for_update=True)
    before = State(person["lifecycle_state"])
    after = domain.on_connection_started(before, kind)
    if after is not before:
        await storage.set_state(conn, person_id, after)
    if domain.is_reactivation(before, after):
        await publish(ContactReactivated(person_id=person_id))
        log.info("person_reactivated", person_id=str(person_id), previous=before.value)
    return after


async def connection_ended(conn: asyncpg.Connection, person_id: uuid.UUID) -> State:
    """The last open relationship or assignment ended: the person's connection has ended (R5)."""
    person = await storage.get_person(conn, person_id, for_update=True)
    before = State(person["lifecycle_state"])
    after = domain.on_connection_ended(before, await storage.open_connections(conn, person_id))
    if after is not before:
        await storage.set_state(conn, person_id, after)
    return after


async def current_state(conn: asyncpg.Connection, person_id: uuid.UUID) -> State | None:
    person = await storage.get_person(conn, person_id, for_update=True)
    if person is not None:
        return State(person["lifecycle_state"])
    return State.erased if await storage.is_erased(conn, person_id) else None


def _confirmation(command_id: uuid.UUID, person_id: uuid.UUID, action: str) -> DispositionConfirmed:
    return DispositionConfirmed(command_id=command_id, person_id=person_id, service=SERVICE, action=action,
                                confirmed_at=utcnow())


async def passivate(conn: asyncpg.Connection, publish: Publish, person_id: uuid.UUID, state: State,
                    command_id: uuid.UUID) -> CommandOutcome:
    """R6: from now on only the register owner reads this person."""
    outcome = domain.passivation_outcome(state)
    if outcome is CommandOutcome.apply:
        await storage.set_state(conn, person_id, State.passive)
        await publish(ContactPassivated(person_id=person_id, command_id=command_id))
    if outcome is not CommandOutcome.stale:
        await publish(_confirmation(command_id, person_id, "passivate"))
    return outcome


async def dispose(conn: asyncpg.Connection, publish: Publish, person_id: uuid.UUID, state: State,
                  command_id: uuid.UUID, action: str) -> CommandOutcome:
    """R7: erase everything, or keep only what the marketing register needs."""
    outcome = domain.disposition_outcome(state, action)
    if outcome is CommandOutcome.apply and action == "erase":
        await keep_suppression(conn, person_id)
        await storage.erase_person(conn, person_id, command_id)
        await publish(ContactErased(person_id=person_id, command_id=command_id))
    elif outcome is CommandOutcome.apply:
        await storage.keep_marketing_data_only(conn, person_id)
        await publish(ContactTransferredToMarketing(person_id=person_id, command_id=command_id))
    if outcome is not CommandOutcome.stale:
        await publish(_confirmation(command_id, person_id, action))
    return outcome


def outbox_publisher(conn: asyncpg.Connection) -> Publish:
    """`publish` for HTTP handlers: the outbox, in the request's transaction."""
    async def publish(payload: Payload) -> Any:
        return await add_event(conn, payload, source=SERVICE)
    return publish


def at_or_now(value: datetime | None) -> datetime:
    return value or utcnow()
