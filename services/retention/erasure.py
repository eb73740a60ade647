"""Erasure re-applied after a restore from backup (issue 15 part 4, SPEC §9): retention's own
erasure (`handlers.on_contacts_erased`) without its confirmation, which was sent the first
time. `rekisteri restore` calls it for every person in the erasure ledger before any service
serves; the evidence of the first erasure (ids and times) stays as the backup had it."""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.retention import storage
from shared.messaging.outbox import Outbox
from shared.privacy.naming import NamingDigests

SERVICE = "retention"


_naming: NamingDigests | None = None


def configure() -> None:
    """The suppression keys dead letters' naming digests are made with, from retention's settings."""
    from services.retention.settings import RetentionSettings

    global _naming
    _naming = NamingDigests(RetentionSettings().suppression_keyring())


async def erase_again(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID]) -> int:
    """In the caller's transaction, on retention's schema; how many persons the backup still held."""
    ids = list(person_ids)
    restored = await conn.fetchval("SELECT count(*) FROM persons WHERE person_id = ANY($1)", ids)
    await storage.forget_persons(conn, ids, "erase")
    await Outbox(conn, SERVICE, naming=_naming).erase_copies(ids)
    return restored
