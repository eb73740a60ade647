"""Erasure re-applied after a restore from backup (issue 15 part 4, SPEC §9).

`rekisteri restore` calls `erase_again` for every person in the erasure ledger, before any
service serves. It is contacts' own erasure (`service.dispose`): the ban's contact points kept
as keyed digests (R8), the person's outbox copies and dead letters dropped, everything else
deleted and the id kept in `erased_persons`. No event is published: the first erasure's
`contact-erased` and confirmations were sent when it was made, and every other service's
schema is erased again by the same restore.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.contacts import storage
from services.contacts.service import keep_suppression
from shared.db import BoundStore
from shared.messaging.handling import UnitOfWork
from shared.messaging.outbox import Outbox
from shared.privacy.naming import NamingDigests

SERVICE = "contacts"


_naming: NamingDigests | None = None


def configure() -> None:
    """The suppression keys the kept digests (and the dead letters' naming digests) are made
    with, from contacts' own settings."""
    from services.contacts.settings import ContactsSettings

    global _naming
    settings = ContactsSettings()
    storage.use_suppression_keys(settings.suppression_keyring(), settings.suppression_chain_ttl_s)
    _naming = NamingDigests(settings.suppression_keyring())


async def erase_again(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID]) -> int:
    """In the caller's transaction, on contacts' schema; how many persons the backup still held.
    Dead letters the backup kept go if they name the person's id or a contact point the
    backup holds for them (issue 15, H1)."""
    uow = UnitOfWork(BoundStore(storage, conn), Outbox(conn, SERVICE, naming=_naming))
    restored = 0
    for person_id in person_ids:
        if await storage.get_person(conn, person_id) is not None:
            restored += 1
            await keep_suppression(uow, person_id)
        emails, phones = await storage.contact_points_of(conn, person_id)
        await uow.outbox.erase_copies([person_id], await storage.message_keys_of(conn, person_id),
                                      emails=emails, phones=phones)
        await storage.erase_person(conn, person_id, None)
    return restored
