"""Erasure re-applied after a restore from backup (issue 15 part 4, SPEC §9): billing's own
erasure (`handlers.on_contact_erased`: person references pseudonymised, amounts and invoices
kept) without its confirmation, which was sent the first time. `rekisteri restore` calls it
for every person in the erasure ledger before any service serves."""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.billing import storage
from shared.messaging.outbox import Outbox
from shared.privacy.naming import NamingDigests

SERVICE = "billing"


_naming: NamingDigests | None = None


def configure() -> None:
    """The suppression keys dead letters' naming digests are made with, from billing's settings."""
    from services.billing.settings import BillingSettings

    global _naming
    _naming = NamingDigests(BillingSettings().suppression_keyring())


async def erase_again(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID]) -> int:
    """In the caller's transaction, on billing's schema; how many rows still named the persons."""
    rows = 0
    for person_id in person_ids:
        rows += await storage.pseudonymise_person(conn, person_id)
        rows += await storage.pseudonymise_contact_person(conn, person_id)
    await Outbox(conn, SERVICE, naming=_naming).erase_copies(list(person_ids))
    return rows
