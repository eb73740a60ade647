"""Envelope encryption of personal fields, the key store and the key settings (SPEC §9)."""
from __future__ import annotations

import base64
import os
import stat
import uuid

import pytest

from services.consent.settings import ConsentSettings
from shared.privacy import (
    CachingKeyStore, KeyConfigurationError, KeyDestroyed, LocalMasterKey, MasterKeys, MemoryKeyStore,
    UndecryptableValue, is_sealed, open_sealed, parse_key, seal,
)
from shared.privacy.crypto import sealed_key_id
from shared.privacy.keys import development_keys, generate_key

VALUE = {"first_name": "Matti", "emails": ["matti@example.fi"], "phones": ["+358401234567"]}


def _store(*old: LocalMasterKey) -> MemoryKeyStore:
    return MemoryKeyStore(MasterKeys(LocalMasterKey(os.urandom(32)), old))


async def test_a_sealed_field_opens_with_the_persons_key_and_hides_the_value():
    store, person = _store(), uuid.uuid4()
    key = await store.get_or_create_data_key(person)
    sealed = seal(key, VALUE)
    assert is_sealed(sealed) and "Matti" not in sealed and "matti" not in sealed
    assert sealed != seal(key, VALUE)  # a fresh nonce each time
    assert open_sealed(await store.data_key(person, sealed_key_id(sealed)), sealed) == VALUE
    assert (await store.get_or_create_data_key(person)).secret == key.secret


async def test_a_field_does_not_open_under_another_persons_key():
    store = _store()
    mine, theirs = await store.get_or_create_data_key(uuid.uuid4()), await store.get_or_create_data_key(uuid.uuid4())
    with pytest.raises(UndecryptableValue):
        open_sealed(theirs, seal(mine, VALUE))


async def test_a_field_moved_to_another_person_does_not_open_even_with_the_same_secret():
    """The person id is authenticated data: a row copied onto someone else is refused."""
    store, person = _store(), uuid.uuid4()
    key = await store.get_or_create_data_key(person)
    impostor = type(key)(uuid.uuid4(), key.key_id, key.secret)
    with pytest.raises(UndecryptableValue):
        open_sealed(impostor, seal(key, VALUE))


async def test_a_tampered_field_is_refused():
    store, person = _store(), uuid.uuid4()
    key = await store.get_or_create_data_key(person)
    prefix, key_id, body = seal(key, VALUE).split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    for bad in (f"{prefix}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}", f"{prefix}.{key_id}.!!",
                "plain text"):
        with pytest.raises(UndecryptableValue):
            open_sealed(key, bad)


async def test_r7_a_destroyed_key_makes_every_sealed_copy_unreadable_and_is_never_remade():
    store, person = CachingKeyStore(_store()), uuid.uuid4()
    sealed = seal(await store.get_or_create_data_key(person), VALUE)
    await store.data_key(person, 1)  # cached
    await store.destroy(person)
    with pytest.raises(KeyDestroyed):
        await store.data_key(person, sealed_key_id(sealed))
    with pytest.raises(KeyDestroyed):
        await store.get_or_create_data_key(person)


async def test_the_newest_key_once_cached_opens_what_it_sealed_without_asking_the_store():
    inner, person = _store(), uuid.uuid4()
    store = CachingKeyStore(inner)
    sealed = seal(await store.get_or_create_data_key(person), VALUE)
    inner.rows.clear()  # the store no longer answers: only the cache can
    assert open_sealed(await store.data_key(person, sealed_key_id(sealed)), sealed) == VALUE


async def test_a_key_opened_as_the_newest_seals_the_answer_without_asking_the_store_again():
    """A consumer that opened an event under the person's newest key seals its answer with it
    (each service's part of an access report asked the store twice)."""
    inner, person = _store(), uuid.uuid4()
    sealed = seal(await inner.get_or_create_data_key(person), VALUE)
    store = CachingKeyStore(inner)
    opened = await store.data_key(person, sealed_key_id(sealed))
    inner.rows.clear()  # the store no longer answers: only the cache can
    assert await store.get_or_create_data_key(person) == opened


async def test_a_key_opened_when_a_newer_exists_does_not_seal_new_values():
    inner, person = _store(), uuid.uuid4()
    old = seal(await inner.get_or_create_data_key(person), VALUE)
    await inner.rotate_data_key(person)
    store = CachingKeyStore(inner)
    await store.data_key(person, sealed_key_id(old))
    assert (await store.get_or_create_data_key(person)).key_id == 2


async def test_a_rotated_data_key_seals_new_values_and_older_ones_still_open():
    store, person = _store(), uuid.uuid4()
    first = seal(await store.get_or_create_data_key(person), VALUE)
    await store.rotate_data_key(person)
    second = seal(await store.get_or_create_data_key(person), VALUE)
    assert (sealed_key_id(first), sealed_key_id(second)) == (1, 2)
    for sealed in (first, second):
        assert open_sealed(await store.data_key(person, sealed_key_id(sealed)), sealed) == VALUE


async def test_master_key_rotation_rewraps_every_data_key():
    old_master = LocalMasterKey(os.urandom(32))
    before = MemoryKeyStore(MasterKeys(old_master))
    person = uuid.uuid4()
    sealed = seal(await before.get_or_create_data_key(person), VALUE)
    rotating = MemoryKeyStore(MasterKeys(LocalMasterKey(os.urandom(32)), [old_master]))
    rotating.rows, rotating.destroyed = before.rows, before.destroyed
    assert await rotating.rewrap() == 1 and await rotating.rewrap() == 0
    after = MemoryKeyStore(MasterKeys(rotating.master.current))  # the old master key retired
    after.rows = rotating.rows
    assert open_sealed(await after.data_key(person, 1), sealed) == VALUE
    with pytest.raises(UndecryptableValue):
        await before.data_key(person, 1)  # the old master key no longer opens the re-wrapped key


async def test_a_wrapped_key_does_not_open_under_a_wrong_master_key():
    store, person = _store(), uuid.uuid4()
    await store.get_or_create_data_key(person)
    wrong = MemoryKeyStore(MasterKeys(LocalMasterKey(os.urandom(32))))
    wrong.rows = {k: (wrong.master.current.key_id, wrapped) for k, (_, wrapped) in store.rows.items()}
    with pytest.raises(UndecryptableValue):
        await wrong.data_key(person, 1)


def test_keys_read_as_base64_or_hex_and_a_bad_one_is_named_never_echoed():
    raw = os.urandom(32)
    assert parse_key("K", raw.hex()) == raw == parse_key("K", base64.b64encode(raw).decode())
    assert parse_key("K", base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad, rule in (("", "not set"), ("short", "32 bytes|base64"), ("z" * 64, "base64|32 bytes"),
                      (base64.b64encode(os.urandom(16)).decode(), "32 bytes")):
        with pytest.raises(KeyConfigurationError, match=rule) as refused:
            parse_key("REKISTERI_MASTER_KEY", bad)
        assert "REKISTERI_MASTER_KEY" in str(refused.value) and (not bad or bad not in str(refused.value))


@pytest.mark.parametrize("variable", ["REKISTERI_SUPPRESSION_KEY", "REKISTERI_MASTER_KEY"])
def test_a_service_refuses_to_start_without_its_key_naming_the_variable(monkeypatch, variable):
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match=f"{variable} is not set"):
        ConsentSettings()
    monkeypatch.setenv(variable, "not-a-key-but-a-secret")
    with pytest.raises(ValueError, match=variable) as refused:
        ConsentSettings()
    assert "not-a-key-but-a-secret" not in str(refused.value)


def test_development_keys_are_made_once_readable_by_the_owner_only(tmp_path):
    made = development_keys(tmp_path, {})
    assert set(made) == {"REKISTERI_SUPPRESSION_KEY", "REKISTERI_MASTER_KEY"}
    assert all(len(parse_key(k, v)) == 32 for k, v in made.items())
    assert development_keys(tmp_path, {}) == made  # a restarted stack reads its own data
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    given = generate_key()
    assert "REKISTERI_MASTER_KEY" not in development_keys(tmp_path, {"REKISTERI_MASTER_KEY": given})


def test_rekisteri_up_gives_its_services_development_keys_kept_in_its_data_directory(monkeypatch, tmp_path):
    """Outside `rekisteri up` a service refuses to start without keys; the embedded stack makes its own."""
    from shared.ops.launcher import Stack

    for variable in ("REKISTERI_SUPPRESSION_KEY", "REKISTERI_MASTER_KEY"):
        monkeypatch.delenv(variable, raising=False)
    env = Stack(root=tmp_path).env
    assert env["REKISTERI_MASTER_KEY"] == (tmp_path / "master.key").read_text().strip()
    assert env["REKISTERI_SUPPRESSION_KEY"] == (tmp_path / "suppression.key").read_text().strip()
    assert Stack(root=tmp_path).env["REKISTERI_MASTER_KEY"] == env["REKISTERI_MASTER_KEY"]
