"""The erasure ledger (issue 15 part 4, SPEC §9): the ids of erased persons and when.

The one register-wide record of erasures that outlives a restore: `rekisteri backup` leaves
its schema (`erasure_ledger`, shared/sql/0005_erasure_ledger.sql) out of the dump and
`rekisteri restore` re-applies every erasure in it. Contacts, where every erasure starts,
writes it in the erasure's own transaction. It holds no personal value: a person id is a
random UUID that names nobody once the person's data is gone. `rekisteri dlq replay` reads
it to refuse an erased person's dead letters. This module is the one place that names the
schema (like the key store, it is not a service's own).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeAlias, cast

import asyncpg

SCHEMA = "erasure_ledger"

Conn: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def record_erasures(conn: Conn, person_ids: Sequence[uuid.UUID], at: datetime | None = None) -> None:
    """Write the erasures (the first time of each person's is kept)."""
    await conn.execute(
        "INSERT INTO erasure_ledger.erasure (person_id, erased_at)"
        " SELECT p, coalesce($2::timestamptz, now()) FROM unnest($1::uuid[]) AS p ON CONFLICT (person_id) DO NOTHING",
        list(person_ids), at)


async def erasures(conn: Conn) -> list[tuple[uuid.UUID, datetime]]:
    """Every erasure in the ledger, oldest first."""
    rows = await conn.fetch("SELECT person_id, erased_at FROM erasure_ledger.erasure ORDER BY erased_at, person_id")
    return [(r["person_id"], r["erased_at"]) for r in rows]


async def erased_among(conn: Conn, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """Which of these persons were erased, and when."""
    rows = await conn.fetch("SELECT person_id, erased_at FROM erasure_ledger.erasure WHERE person_id = ANY($1::uuid[])",
                            list(set(person_ids)))
    return {r["person_id"]: r["erased_at"] for r in rows}


async def exists(conn: Conn) -> bool:
    """Whether the ledger's schema is there (a database no service has migrated has none)."""
    return bool(await conn.fetchval("SELECT to_regclass('erasure_ledger.erasure') IS NOT NULL"))


async def restore_in_progress(conn: Conn) -> str | None:
    """The backup an unfinished `rekisteri restore` was restoring, or None."""
    if not await conn.fetchval("SELECT to_regclass('erasure_ledger.restore_in_progress') IS NOT NULL"):
        return None
    return cast("str | None", await conn.fetchval("SELECT backup FROM erasure_ledger.restore_in_progress"))
