"""Crypto-shredding of events (issue 15, SPEC §9): the outbox seals the catalogue's personal
fields under the subject's data key, the consume path opens them in one place, and an event
whose key is destroyed is skipped as erased, never dead-lettered (the decision in
docs/PRIVACY.md). The key store is the in-memory one; the real one is in the integration tests."""
from __future__ import annotations

import os
import uuid
from types import SimpleNamespace

import pytest

from shared.errors import Rejected
from shared.messaging.consumer import InboxConsumer
from shared.messaging.handling import Status
from shared.messaging.parsing import Incoming
from shared.messaging.events import AccessRequested, ContactRegistered, OptoutRegistered, Purpose
from shared.messaging.outbox import SealingUnavailable, build_envelope, build_sealed_envelope
from shared.messaging.parsing import parse_opening
from shared.messaging.topics import CATALOGUE
from shared.metrics import Metrics
from shared.privacy import KeyDestroyed, LocalMasterKey, MasterKeys, MemoryKeyStore, is_sealed

EMAIL, PHONE = "sinetti.testi@example.fi", "+358401112233"


def _keys() -> MemoryKeyStore:
    return MemoryKeyStore(MasterKeys(LocalMasterKey(os.urandom(32))))


def _registered(person: uuid.UUID) -> ContactRegistered:
    return ContactRegistered(person_id=person, emails=[EMAIL], phones=[PHONE], source="staff", lifecycle_state="active")


async def _sealed_bytes(payload, keys) -> bytes:
    return (await build_sealed_envelope(payload, keys, source="contacts"))[2].to_bytes()


def test_every_personal_topic_of_the_register_seals_something_but_the_external_import():
    unsealed = sorted(t.name for t in CATALOGUE.values() if t.personal_data and not t.sealed_fields)
    assert unsealed == ["contact-upserted"]  # produced only by other systems, in plain (docs/PRIVACY.md)


async def test_the_outbox_seals_personal_fields_and_the_consumer_opens_them():
    keys, person = _keys(), uuid.uuid4()
    raw = await _sealed_bytes(_registered(person), keys)
    assert EMAIL.encode() not in raw and PHONE.encode() not in raw and str(person).encode() in raw
    parsed = await parse_opening(CATALOGUE["contact-registered"], Incoming(raw), keys)
    assert parsed.payload.emails == [EMAIL] and parsed.payload.phones == [PHONE]


async def test_a_signed_command_is_signed_over_its_sealed_form_and_still_verifies():
    keys, person = _keys(), uuid.uuid4()
    raw = await _sealed_bytes(AccessRequested(request_id=uuid.uuid4(), person_id=person, emails=[EMAIL]), keys)
    assert EMAIL.encode() not in raw and b'"signature"' in raw
    assert (await parse_opening(CATALOGUE["access-requested"], Incoming(raw), keys)).payload.emails == [EMAIL]


async def test_a_personal_event_without_a_key_store_is_refused_not_sent_in_plain():
    with pytest.raises(SealingUnavailable):
        await build_sealed_envelope(_registered(uuid.uuid4()), None, source="contacts")
    # nothing personal in it: nothing to seal, no key needed
    bare = OptoutRegistered(person_id=uuid.uuid4(), purposes=[Purpose.direct_advertising], source="x")
    assert (await build_sealed_envelope(bare, None, source="consent"))[2].data["emails"] == []


async def test_a_ban_naming_only_contact_points_is_sealed_under_its_own_event_id():
    keys = _keys()
    _, _, envelope = await build_sealed_envelope(
        OptoutRegistered(emails=[EMAIL], purposes=[Purpose.direct_advertising], source="web"), keys, source="consent")
    assert is_sealed(envelope.data["emails"])
    parsed = await parse_opening(CATALOGUE["optout-registered"], Incoming(envelope.to_bytes()), keys)
    assert parsed.payload.emails == [EMAIL]


async def test_fields_in_plain_from_another_system_are_accepted():
    _, _, envelope = build_envelope(_registered(uuid.uuid4()), source="crm")
    parsed = await parse_opening(CATALOGUE["contact-registered"], Incoming(envelope.to_bytes()), _keys())
    assert parsed.payload.emails == [EMAIL]


async def test_a_sealed_value_moved_onto_another_person_is_rejected():
    keys, person, other = _keys(), uuid.uuid4(), uuid.uuid4()
    await keys.get_or_create_data_key(other)
    raw = (await _sealed_bytes(_registered(person), keys)).replace(str(person).encode(), str(other).encode())
    with pytest.raises(Rejected, match="does not open"):
        await parse_opening(CATALOGUE["contact-registered"], Incoming(raw), keys)


async def test_an_event_of_a_person_whose_key_is_destroyed_is_skipped_as_erased_without_a_dead_letter():
    keys, person = _keys(), uuid.uuid4()
    raw = await _sealed_bytes(_registered(person), keys)
    await keys.destroy(person)
    with pytest.raises(KeyDestroyed):
        await parse_opening(CATALOGUE["contact-registered"], Incoming(raw), keys)

    class NoDatabase:  # a dead letter or an inbox row would need the pool: there must be none
        def __getattr__(self, name):
            raise AssertionError(f"the database was used ({name})")

    metrics = Metrics("consent")
    host = SimpleNamespace(name="consent", settings=SimpleNamespace(consumer_max_attempts=3), metrics=metrics,
                           keys=keys, pool=NoDatabase(), store_for=lambda conn: conn)
    consumer = InboxConsumer(host, "contact-registered", handler=lambda ctx: None)
    results = await consumer.apply([Incoming(raw, str(person).encode())])
    assert [r.status for r in results] == [Status.erased]
    assert metrics.registry.get_sample_value("rekisteri_erased_event_skipped_total",
                                             {"topic": "contact-registered"}) == 1
    with pytest.raises(KeyDestroyed):  # and nothing new is ever said about the person
        await build_sealed_envelope(_registered(person), keys, source="contacts")
