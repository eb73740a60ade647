"""Re-keying the suppression lists onto the current suppression key (SPEC §9, R8):
`rekisteri suppression rekey`. No plain value is needed, so bans of erased persons move too.

The steps keep every ban matchable throughout (docs/PRIVACY.md):
1. announce: each chain in use that does not end in the current key gets its extended chain
   (`<chain>>current`) in `suppression_key_chain`; services re-read that list within
   `SUPPRESSION_CHAIN_TTL_S` and from then on store and match under it too;
2. wait longer than that;
3. move: each stored digest is wrapped once more and re-labelled, batch by batch;
4. retire: the emptied chains leave `suppression_key_chain`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Sequence

import asyncpg

from shared.privacy.digests import SuppressionKeyring

LEGACY_CHAIN = "legacy"  # digests of a key whose id was never recorded (before issue 15): not movable


@dataclass(frozen=True)
class DigestTable:
    """A table with `digest bytea` and `key_id text` columns; `columns` are copied as they are."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class DigestArray:
    """A `text[]` column of `<chain>:<hex digest>` elements."""

    table: str
    key: str
    column: str


@dataclass(frozen=True)
class SuppressionLists:
    """What one service schema keeps as keyed digests."""

    schema: str
    tables: tuple[DigestTable, ...]
    arrays: tuple[DigestArray, ...] = ()


@dataclass
class RekeyReport:
    schema: str
    chains_moved: list[str] = field(default_factory=list)
    digests_moved: int = 0
    legacy_left: int = 0


Progress = Callable[[str], None]


async def chains_in_use(conn: asyncpg.Connection, lists: SuppressionLists) -> tuple[set[str], int]:
    """Every chain the registry names or a stored digest carries, and how many legacy digests."""
    chains = {r[0] for r in await conn.fetch("SELECT chain FROM suppression_key_chain")}
    legacy = 0
    for t in lists.tables:
        for r in await conn.fetch(f"SELECT key_id, count(*) FROM {t.name} GROUP BY key_id"):
            if r[0] == LEGACY_CHAIN:
                legacy += r[1]
            else:
                chains.add(r[0])
    for a in lists.arrays:
        for r in await conn.fetch(f"SELECT DISTINCT split_part(e, ':', 1) FROM {a.table}, unnest({a.column}) AS e"):
            chains.add(r[0])
    return chains, legacy


async def announce(conn: asyncpg.Connection, keyring: SuppressionKeyring, lists: SuppressionLists
                   ) -> RekeyReport:
    """Step 1: register the extended chains (and the current one)."""
    chains, legacy = await chains_in_use(conn, lists)
    to_move = sorted(c for c in chains if not keyring.is_current(c))
    for chain in to_move:
        keyring.keys_of(chain)  # UnknownSuppressionKey names REKISTERI_SUPPRESSION_OLD_KEYS
    await conn.execute(
        "INSERT INTO suppression_key_chain (chain) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        [keyring.current_chain, *(keyring.extended(c) for c in to_move)])
    return RekeyReport(lists.schema, to_move, legacy_left=legacy)


async def _move_table(conn: asyncpg.Connection, keyring: SuppressionKeyring, table: DigestTable,
                      chains: list[str], batch: int) -> int:
    moved = 0
    cols = ", ".join(table.columns)
    src_cols = ", ".join(f"src.{c}" for c in table.columns)
    while True:
        rows = await conn.fetch(f"SELECT DISTINCT digest, key_id FROM {table.name} WHERE key_id = ANY($1::text[])"
                                " LIMIT $2", chains, batch)
        if not rows:
            return moved
        old_digests = [r["digest"] for r in rows]
        old_chains = [r["key_id"] for r in rows]
        new_digests = [keyring.rewrap(d) for d in old_digests]
        new_chains = [keyring.extended(c) for c in old_chains]
        async with conn.transaction():
            await conn.execute(
                f"WITH m AS (SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[]) AS m(od, oc, nd, nc)),"
                f" moved AS (INSERT INTO {table.name} (digest, key_id, {cols})"
                f"   SELECT m.nd, m.nc, {src_cols} FROM {table.name} AS src"
                f"   JOIN m ON src.digest = m.od AND src.key_id = m.oc ON CONFLICT DO NOTHING)"
                f" DELETE FROM {table.name} AS dst USING m WHERE dst.digest = m.od AND dst.key_id = m.oc",
                old_digests, old_chains, new_digests, new_chains)
        moved += len(rows)


async def _move_array(conn: asyncpg.Connection, keyring: SuppressionKeyring, array: DigestArray,
                      chains: set[str]) -> int:
    moved = 0
    rows = await conn.fetch(f"SELECT {array.key} AS k, {array.column} AS a FROM {array.table}"
                            f" WHERE {array.column} <> '{{}}'")
    for r in rows:
        tokens = []
        for token in r["a"]:
            chain, _, hexdigest = token.partition(":")
            if chain in chains:
                token = f"{keyring.extended(chain)}:{keyring.rewrap(bytes.fromhex(hexdigest)).hex()}"
                moved += 1
            tokens.append(token)
        if tokens != list(r["a"]):
            await conn.execute(f"UPDATE {array.table} SET {array.column} = $2 WHERE {array.key} = $1",
                               r["k"], list(dict.fromkeys(tokens)))
    return moved


async def move(conn: asyncpg.Connection, keyring: SuppressionKeyring, lists: SuppressionLists,
               report: RekeyReport, *, batch: int = 1000) -> None:
    """Steps 3 and 4: wrap every digest of the announced chains once more, then retire them."""
    if not report.chains_moved:
        return
    for table in lists.tables:
        report.digests_moved += await _move_table(conn, keyring, table, report.chains_moved, batch)
    for array in lists.arrays:
        report.digests_moved += await _move_array(conn, keyring, array, set(report.chains_moved))
    await conn.execute("DELETE FROM suppression_key_chain WHERE chain = ANY($1::text[])", report.chains_moved)


async def rekey(connections: Sequence[tuple[asyncpg.Connection, SuppressionLists]], keyring: SuppressionKeyring,
                *, grace_s: float, batch: int = 1000, progress: Progress = lambda _line: None) -> list[RekeyReport]:
    """Re-key every given list onto the current key; each connection's search_path is its schema."""
    reports = []
    for conn, lists in connections:
        report = await announce(conn, keyring, lists)
        progress(f"{lists.schema}: {len(report.chains_moved)} key chain(s) to move"
                 + (f" ({', '.join(report.chains_moved)})" if report.chains_moved else ""))
        reports.append(report)
    if any(r.chains_moved for r in reports):
        progress(f"waiting {grace_s:.1f} s for the services to see the new chains")
        await asyncio.sleep(grace_s)
    for (conn, lists), report in zip(connections, reports):
        await move(conn, keyring, lists, report, batch=batch)
        progress(f"{lists.schema}: {report.digests_moved} digest(s) re-keyed onto {keyring.current_chain}"
                 + (f"; {report.legacy_left} legacy digest(s) left as they are" if report.legacy_left else ""))
    return reports

