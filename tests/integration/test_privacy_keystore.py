"""The PostgreSQL data-key store on the real database (SPEC §9): one key per person however
many ask at once, keys only wrapped at rest, crypto-shredding that nothing undoes, master-key
rotation, and an unreachable store reported as retryable."""
from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from shared.db import create_pool, migrate
from tests.infra import create_database
from shared.privacy import (
    CachingKeyStore, KeyDestroyed, KeyNotFound, KeyStoreUnavailable, LocalMasterKey, MasterKeys, PostgresKeyStore,
    open_sealed, seal,
)

VALUE = {"emails": ["matti@example.fi"]}


@pytest.fixture(scope="module")
async def pool(infra):
    """A database of its own: the register-wide key store of the session's database also holds
    the running services' keys, under a master key these tests do not know (a rewrap there
    would rightly refuse them)."""
    pool = await create_pool(await create_database(infra), "keystore_test")
    await migrate(pool, "keystore_test", None)  # the platform migrations make the keystore schema
    yield pool
    await pool.close()


async def test_r7_one_data_key_per_person_wrapped_at_rest_and_shredded_for_good(pool):
    store = PostgresKeyStore(pool, MasterKeys(LocalMasterKey(os.urandom(32))))
    person = uuid.uuid4()
    keys = await asyncio.gather(*(store.get_or_create_data_key(person) for _ in range(8)))
    assert len({k.secret for k in keys}) == 1 and keys[0].key_id == 1
    wrapped = await pool.fetchval("SELECT wrapped FROM keystore.data_key WHERE person_id = $1", person)
    assert keys[0].secret not in wrapped  # only the wrapped form is stored
    sealed = seal(keys[0], VALUE)
    assert open_sealed(await store.data_key(person, 1), sealed) == VALUE
    with pytest.raises(KeyNotFound):
        await store.data_key(person, 2)
    rotated = await store.rotate_data_key(person)  # new values under key 2, old ones still open
    assert rotated.key_id == 2 and (await store.get_or_create_data_key(person)).key_id == 2
    assert open_sealed(await store.data_key(person, 1), sealed) == VALUE

    await store.destroy(person)
    assert await pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", person) == 0
    assert await store.destroyed_at(person) is not None
    with pytest.raises(KeyDestroyed):
        await store.data_key(person, 1)
    with pytest.raises(KeyDestroyed):  # a late event about the person never makes a new key
        await store.get_or_create_data_key(person)


async def test_master_key_rotation_rewraps_the_stored_data_keys(pool):
    old = LocalMasterKey(os.urandom(32))
    person = uuid.uuid4()
    sealed = seal(await PostgresKeyStore(pool, MasterKeys(old)).get_or_create_data_key(person), VALUE)
    new = LocalMasterKey(os.urandom(32))
    rotating = PostgresKeyStore(pool, MasterKeys(new, [old]))
    assert await rotating.rewrap() >= 1
    assert await pool.fetchval("SELECT master_key_id FROM keystore.data_key WHERE person_id = $1", person) == new.key_id
    assert open_sealed(await PostgresKeyStore(pool, MasterKeys(new)).data_key(person, 1), sealed) == VALUE


async def test_an_unreachable_key_store_is_reported_as_retryable(database_url):
    closed = await create_pool(database_url, "keystore_test")
    await closed.close()
    store = PostgresKeyStore(closed, MasterKeys(LocalMasterKey(os.urandom(32))))
    with pytest.raises(KeyStoreUnavailable):
        await store.get_or_create_data_key(uuid.uuid4())
    with pytest.raises(KeyStoreUnavailable):
        await store.data_key(uuid.uuid4(), 1)


async def test_a_key_made_in_a_publishers_rolled_back_transaction_is_never_used(pool):
    """Issue 15: the outbox makes a person's first key in its own transaction; were that rolled
    back and the key kept in the cache, later events would be sealed under a key that does not
    exist and never open."""
    store = CachingKeyStore(PostgresKeyStore(pool, MasterKeys(LocalMasterKey(os.urandom(32)))))
    person = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await store.get_or_create_data_key(person, conn)
            raise RuntimeError("the publisher's change failed")
    assert await pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", person) == 0
    async with pool.acquire() as conn, conn.transaction():
        made = await store.get_or_create_data_key(person, conn)
    assert (await store.data_key(person, made.key_id)).secret == made.secret
    async with pool.acquire() as conn, conn.transaction():  # read back committed: now the same key
        assert (await store.get_or_create_data_key(person, conn)).secret == made.secret


async def test_a_key_read_from_the_store_says_whether_it_is_the_persons_newest(pool):
    """What lets a consumer's cache seal its answer with the key it opened the event under."""
    store = PostgresKeyStore(pool, MasterKeys(LocalMasterKey(os.urandom(32))))
    person = uuid.uuid4()
    first = await store.get_or_create_data_key(person)
    assert (await store.data_key(person, first.key_id)).newest is True
    second = await store.rotate_data_key(person)
    assert (await store.data_key(person, first.key_id)).newest is False
    assert (await store.data_key(person, second.key_id)).newest is True
