"""The data-key store (SPEC §9): one data key per person (a person may have several after a
data-key rotation; the newest seals), kept only wrapped by the master key.

`PostgresKeyStore` keeps them in the register-wide `keystore` schema (`shared/sql/
0003_keystore.sql`), the one place outside a service's own schema that services use: a
consumer needs the key its publisher sealed with. `CachingKeyStore` keeps unwrapped keys in
memory for a while; `MemoryKeyStore` is for unit tests. Design notes: docs/PRIVACY.md.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol

import asyncpg

from shared.privacy.crypto import (
    DataKey, KeyDestroyed, KeyNotFound, KeyStoreUnavailable, MasterKeys, new_data_key_secret, wrapping_context,
)

_UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class KeyStore(Protocol):
    async def get_or_create_data_key(self, person_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> DataKey:
        """The key to seal the person's fields with; `KeyDestroyed` once the person is erased.
        With `conn` (a publisher's open transaction) a new key is made in that transaction, so
        it commits with the events it seals and no second connection is taken from the pool."""

    async def data_key(self, person_id: uuid.UUID, key_id: int) -> DataKey:
        """The key a sealed value names; `KeyDestroyed` once the person is erased."""

    async def destroy(self, person_id: uuid.UUID) -> None:
        """Crypto-shred the person: every key goes, a tombstone (id and date) stays."""


class _Wrapping:
    """Wrapping and unwrapping under the master keys, shared by the stores."""

    def __init__(self, master: MasterKeys) -> None:
        self.master = master

    def _wrap(self, person_id: uuid.UUID, key_id: int, secret: bytes) -> tuple[str, bytes]:
        return self.master.current.key_id, self.master.current.wrap(secret, wrapping_context(person_id, key_id))

    def _unwrap(self, person_id: uuid.UUID, key_id: int, master_key_id: str, wrapped: bytes,
                newest: bool | None = None) -> DataKey:
        secret = self.master.get(master_key_id).unwrap(wrapped, wrapping_context(person_id, key_id))
        return DataKey(person_id, key_id, secret, newest)


class MemoryKeyStore(_Wrapping):
    """In-memory, for unit tests of one function; the same wrapping as the real store."""

    def __init__(self, master: MasterKeys) -> None:
        super().__init__(master)
        self.rows: dict[tuple[uuid.UUID, int], tuple[str, bytes]] = {}
        self.destroyed: set[uuid.UUID] = set()

    async def get_or_create_data_key(self, person_id: uuid.UUID, conn: object = None) -> DataKey:
        if person_id in self.destroyed:
            raise KeyDestroyed(person_id)
        ids = [k for p, k in self.rows if p == person_id]
        if not ids:
            self.rows[(person_id, 1)] = self._wrap(person_id, 1, new_data_key_secret())
            ids = [1]
        return await self.data_key(person_id, max(ids))

    async def rotate_data_key(self, person_id: uuid.UUID) -> DataKey:
        """A new newest key; older sealed values still open under their own key."""
        current = await self.get_or_create_data_key(person_id)
        self.rows[(person_id, current.key_id + 1)] = self._wrap(person_id, current.key_id + 1, new_data_key_secret())
        return await self.data_key(person_id, current.key_id + 1)

    async def data_key(self, person_id: uuid.UUID, key_id: int) -> DataKey:
        if person_id in self.destroyed:
            raise KeyDestroyed(person_id)
        try:
            master_key_id, wrapped = self.rows[(person_id, key_id)]
        except KeyError:
            raise KeyNotFound(f"no data key {key_id} for person {person_id}") from None
        newest = not any(p == person_id and k > key_id for p, k in self.rows)
        return self._unwrap(person_id, key_id, master_key_id, wrapped, newest=newest)

    async def destroy(self, person_id: uuid.UUID) -> None:
        self.destroyed.add(person_id)
        for row in [r for r in self.rows if r[0] == person_id]:
            del self.rows[row]

    async def rewrap(self) -> int:
        """Master-key rotation: re-wrap every key not under the current master key."""
        moved = 0
        for (person_id, key_id), (master_key_id, wrapped) in list(self.rows.items()):
            if master_key_id != self.master.current.key_id:
                key = self._unwrap(person_id, key_id, master_key_id, wrapped)
                self.rows[(person_id, key_id)] = self._wrap(person_id, key_id, key.secret)
                moved += 1
        return moved


class PostgresKeyStore(_Wrapping):
    """Keys in `keystore.data_key`, tombstones in `keystore.destroyed_key`. A person's key is
    made and destroyed under a per-person advisory lock, so no key is made after a destroy."""

    def __init__(self, pool: asyncpg.Pool, master: MasterKeys) -> None:
        super().__init__(master)
        self.pool = pool

    async def get_or_create_data_key(self, person_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> DataKey:
        if conn is not None:
            return await self.newest_data_key(person_id, conn) or await self.create_data_key(person_id, conn)
        try:
            row = await self._newest(person_id)
            if row is None:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('keystore:' || $1::uuid::text))", person_id)
                    if await conn.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1", person_id):
                        raise KeyDestroyed(person_id)
                    master_key_id, wrapped = self._wrap(person_id, 1, new_data_key_secret())
                    await conn.execute(
                        "INSERT INTO keystore.data_key (person_id, key_id, master_key_id, wrapped)"
                        " VALUES ($1, 1, $2, $3) ON CONFLICT DO NOTHING", person_id, master_key_id, wrapped)
                row = await self._newest(person_id)
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc
        if row is None:
            raise KeyDestroyed(person_id)  # destroyed between the insert and the read
        return self._unwrap(person_id, row["key_id"], row["master_key_id"], row["wrapped"])

    async def newest_data_key(self, person_id: uuid.UUID, conn: asyncpg.Connection) -> DataKey | None:
        """The person's newest key as `conn` sees it, or None (none made yet, or destroyed)."""
        try:
            row = await self._newest(person_id, conn)
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc
        return None if row is None else self._unwrap(person_id, row["key_id"], row["master_key_id"], row["wrapped"])

    async def create_data_key(self, person_id: uuid.UUID, conn: asyncpg.Connection) -> DataKey:
        """Make the person's first key in the caller's transaction (under the person's advisory
        lock until it ends, so a destroy waits for it and a concurrent first seal reuses it)."""
        try:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('keystore:' || $1::uuid::text))", person_id)
            if await conn.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1", person_id):
                raise KeyDestroyed(person_id)
            master_key_id, wrapped = self._wrap(person_id, 1, new_data_key_secret())
            await conn.execute("INSERT INTO keystore.data_key (person_id, key_id, master_key_id, wrapped)"
                               " VALUES ($1, 1, $2, $3) ON CONFLICT DO NOTHING", person_id, master_key_id, wrapped)
            row = await self._newest(person_id, conn)
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc
        assert row is not None  # inserted above, under the person's lock
        return self._unwrap(person_id, row["key_id"], row["master_key_id"], row["wrapped"])

    async def rotate_data_key(self, person_id: uuid.UUID) -> DataKey:
        """A new newest key for the person; values sealed before still open under their own key."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('keystore:' || $1::uuid::text))", person_id)
                if await conn.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1", person_id):
                    raise KeyDestroyed(person_id)
                key_id = await conn.fetchval("SELECT coalesce(max(key_id), 0) + 1 FROM keystore.data_key"
                                             " WHERE person_id = $1", person_id)
                master_key_id, wrapped = self._wrap(person_id, key_id, new_data_key_secret())
                await conn.execute("INSERT INTO keystore.data_key (person_id, key_id, master_key_id, wrapped)"
                                   " VALUES ($1, $2, $3, $4)", person_id, key_id, master_key_id, wrapped)
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc
        return await self.data_key(person_id, key_id)

    async def _newest(self, person_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> asyncpg.Record | None:
        return await (conn or self.pool).fetchrow(
            "SELECT key_id, master_key_id, wrapped FROM keystore.data_key WHERE person_id = $1"
            " ORDER BY key_id DESC LIMIT 1", person_id)

    async def data_key(self, person_id: uuid.UUID, key_id: int) -> DataKey:
        try:
            row = await self.pool.fetchrow(
                "SELECT k.master_key_id, k.wrapped, d.person_id IS NOT NULL AS destroyed,"
                " NOT EXISTS (SELECT 1 FROM keystore.data_key n WHERE n.person_id = p.person_id"
                "             AND n.key_id > $2) AS newest"
                " FROM (SELECT $1::uuid AS person_id) p"
                " LEFT JOIN keystore.data_key k ON k.person_id = p.person_id AND k.key_id = $2"
                " LEFT JOIN keystore.destroyed_key d ON d.person_id = p.person_id", person_id, key_id)
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc
        if row["destroyed"]:
            raise KeyDestroyed(person_id)
        if row["wrapped"] is None:
            raise KeyNotFound(f"no data key {key_id} for person {person_id}")
        return self._unwrap(person_id, key_id, row["master_key_id"], row["wrapped"], newest=row["newest"])

    async def destroy(self, person_id: uuid.UUID) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await destroy_keys(conn, [person_id])
        except _UNREACHABLE as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from exc

    async def destroyed_at(self, person_id: uuid.UUID) -> object | None:
        """When the person's keys were destroyed (evidence of erasure), or None."""
        async with self.pool.acquire() as conn:
            found: object | None = (await destroyed_at(conn, [person_id])).get(person_id)
            return found

    async def rewrap(self, batch: int = 500) -> int:
        """Master-key rotation: re-wrap, batch by batch, every key not under the current master
        key (each row compared-and-set on its old master key id, so two runs do not clash)."""
        moved = 0
        current = self.master.current.key_id
        while True:
            rows = await self.pool.fetch(
                "SELECT person_id, key_id, master_key_id, wrapped FROM keystore.data_key"
                " WHERE master_key_id <> $1 LIMIT $2", current, batch)
            if not rows:
                return moved
            updates = []
            for r in rows:
                key = self._unwrap(r["person_id"], r["key_id"], r["master_key_id"], r["wrapped"])
                updates.append((r["person_id"], r["key_id"], r["master_key_id"],
                                *self._wrap(r["person_id"], r["key_id"], key.secret)))
            await self.pool.executemany(
                "UPDATE keystore.data_key SET master_key_id = $4, wrapped = $5"
                " WHERE person_id = $1 AND key_id = $2 AND master_key_id = $3", updates)
            moved += len(updates)


async def destroy_keys(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> None:
    """Crypto-shred the persons in the caller's transaction (the erasure's last step, issue 15):
    tombstones (ids and dates) written and every key deleted, under each person's advisory lock
    (in id order, so two erasures never deadlock), so no key is made after or meanwhile."""
    ids = sorted(set(person_ids))
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('keystore:' || p::text))"
                       " FROM unnest($1::uuid[]) AS p ORDER BY p", ids)
    await conn.execute("INSERT INTO keystore.destroyed_key (person_id) SELECT unnest($1::uuid[])"
                       " ON CONFLICT DO NOTHING", ids)
    await conn.execute("DELETE FROM keystore.data_key WHERE person_id = ANY($1::uuid[])", ids)


async def destroyed_at(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> dict[uuid.UUID, object]:
    """When each of the persons' keys were destroyed (evidence of erasure); absent if not."""
    rows = await conn.fetch("SELECT person_id, destroyed_at FROM keystore.destroyed_key"
                            " WHERE person_id = ANY($1::uuid[])", person_ids)
    return {r["person_id"]: r["destroyed_at"] for r in rows}


class CachingKeyStore:
    """Unwrapped keys kept in memory for `ttl_s` (at most `max_keys`), so a consumer does not
    ask the store for every event. Another process's destroy is seen within `ttl_s`; erasure
    destroys keys only after every service has confirmed, so a cached key outliving it by
    that long reads nothing the service still holds."""

    def __init__(self, inner: KeyStore, *, ttl_s: float = 300.0, max_keys: int = 10_000) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[uuid.UUID, int | None], tuple[float, DataKey]] = OrderedDict()

    def _cached(self, entry: tuple[uuid.UUID, int | None]) -> DataKey | None:
        hit = self._keys.get(entry)
        if hit is None or time.monotonic() - hit[0] >= self.ttl_s:
            self._keys.pop(entry, None)
            return None
        self._keys.move_to_end(entry)
        return hit[1]

    def _keep(self, entry: tuple[uuid.UUID, int | None], key: DataKey) -> DataKey:
        """Kept under the entry asked for and under its own id (the newest key is a key too:
        what a service sealed it then opens without asking the store again), and as the newest
        when the store said it is (what a service opened, its answer seals without asking the
        store again). Each hop of an access report asked."""
        now = time.monotonic()
        entries = {entry, (key.person_id, key.key_id)}
        if key.newest:
            entries.add((key.person_id, None))
        for kept in entries:
            self._keys[kept] = (now, key)
            self._keys.move_to_end(kept)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return key

    async def get_or_create_data_key(self, person_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> DataKey:
        """A key made in a caller's transaction is not kept until it is seen committed: were the
        transaction rolled back, a kept key would seal events under a key that does not exist."""
        cached = self._cached((person_id, None))
        if cached is not None:
            return cached
        if conn is None or not hasattr(self.inner, "newest_data_key"):
            return self._keep((person_id, None), await self.inner.get_or_create_data_key(person_id, conn))
        store: Any = self.inner  # PostgresKeyStore, the one with the transactional key creation
        newest = await store.newest_data_key(person_id, conn)
        if newest is not None:
            return self._keep((person_id, None), newest)
        created: DataKey = await store.create_data_key(person_id, conn)
        return created

    async def data_key(self, person_id: uuid.UUID, key_id: int) -> DataKey:
        return self._cached((person_id, key_id)) or self._keep(
            (person_id, key_id), await self.inner.data_key(person_id, key_id))

    async def destroy(self, person_id: uuid.UUID) -> None:
        for entry in [e for e in self._keys if e[0] == person_id]:
            del self._keys[entry]
        await self.inner.destroy(person_id)


async def destroy_keys_of(conn: asyncpg.Connection, person_ids: list[uuid.UUID]) -> int:
    """A restore's re-applied erasure (issue 15 part 4): the persons' keys, back from the
    backup, destroyed again and their tombstones written, in the caller's transaction. No
    master key is needed to delete what it wrapped. How many keys came back with the backup."""
    await conn.execute("INSERT INTO keystore.destroyed_key (person_id) SELECT unnest($1::uuid[])"
                       " ON CONFLICT DO NOTHING", person_ids)
    status = await conn.execute("DELETE FROM keystore.data_key WHERE person_id = ANY($1::uuid[])", person_ids)
    return int(status.split()[-1])
