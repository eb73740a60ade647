"""Erasure re-applied after a restore from backup (issue 15 part 4, SPEC §9): consent's own
erasure (`handlers.on_contact_erased`) without its confirmation, which was sent the first time.
`rekisteri restore` calls it for every person in the erasure ledger before any service serves."""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.consent import storage
from shared.messaging.outbox import Outbox
from shared.privacy.naming import NamingDigests, stored_tokens

SERVICE = "consent"


_naming: NamingDigests | None = None


def configure() -> None:
    """The suppression keys dead letters' naming digests are made with, from consent's settings."""
    from services.consent.settings import ConsentSettings

    global _naming
    _naming = NamingDigests(ConsentSettings().suppression_keyring())


async def erase_again(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID]) -> int:
    """In the caller's transaction, on consent's schema; how many persons the backup still held."""
    ids = list(person_ids)
    restored = await conn.fetchval("SELECT count(DISTINCT person_id) FROM contact_point WHERE person_id = ANY($1)", ids)
    await storage.suppress_points_of(conn, ids, "erasure")  # the ban outlives the person (R8)
    await Outbox(conn, SERVICE, naming=_naming).erase_copies(
        ids, naming_digests=stored_tokens(await storage.stored_digests_of(conn, ids)))
    for person_id in ids:
        await storage.erase_person(conn, person_id)
    return restored
