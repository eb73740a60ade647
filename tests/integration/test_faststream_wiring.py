"""The runtime's FastStream subscribers driven by FastStream's own `TestKafkaBroker` (issue 21,
docs/adr/0001): what `shared/runtime.py` declares (topics, batch subscriber, pass-through
decoder, manual acks) routes each message to its handler through the one apply path, on the
service's real PostgreSQL schema. The broker is FastStream's in-memory one, so this checks
the wiring alone; the same flows run on the real broker in the other integration tests."""
from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator

import pytest
from faststream.kafka import TestKafkaBroker

from shared.db import create_pool, migrate
from shared.messaging.events import Channel, ContactPassivated, OptoutRegistered, Purpose
from tests.conftest import service_test_settings
from tests.helpers import envelope_for
from tests.infra import create_database


@pytest.fixture
async def consent_on_test_broker(infra) -> AsyncIterator[tuple[Any, Any]]:
    """consent's runtime on a database of its own, its subscribers on FastStream's test broker."""
    import services.consent.app as module

    settings = module.SETTINGS(**service_test_settings(infra, await create_database(infra)))
    runtime = module.build_app(settings).state.runtime
    runtime._pool = await create_pool(settings.database_url, settings.schema, min_size=1, max_size=4)
    await migrate(runtime._pool, settings.schema, runtime.migrations_dir)
    runtime._declare_event_subscriber()
    runtime._declared = True
    async with TestKafkaBroker(runtime.broker) as broker:
        yield runtime, broker
    await runtime._pool.close()


def ban(person: uuid.UUID) -> tuple[str, str, Any]:
    return envelope_for(OptoutRegistered(person_id=person, purposes=[Purpose.direct_advertising],
                                         channels=[Channel.email], source="web-form"))


async def test_a_message_on_a_per_event_topic_reaches_its_handler_once(consent_on_test_broker):
    runtime, broker = consent_on_test_broker
    person = uuid.uuid4()
    topic, key, envelope = ban(person)
    for _ in range(2):  # redelivered: the inbox applies it once
        await broker.publish(envelope.to_bytes(), topic=topic, key=key.encode())
    states = await runtime.pool.fetch("SELECT status FROM consent_state WHERE person_id = $1", person)
    assert [s["status"] for s in states] == ["banned"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", envelope.id) == 1


async def test_each_topic_of_the_shared_subscriber_goes_to_its_own_handler(consent_on_test_broker):
    """One FastStream subscriber serves all of consent's per-event topics; the topic decides."""
    runtime, broker = consent_on_test_broker
    person = uuid.uuid4()
    topic, key, envelope = envelope_for(ContactPassivated(person_id=person))
    await broker.publish(envelope.to_bytes(), topic=topic, key=key.encode())
    assert await runtime.pool.fetchval("SELECT true FROM passive_person WHERE person_id = $1", person)
    assert await runtime.pool.fetchval("SELECT count(*) FROM consent_state WHERE person_id = $1", person) == 0


async def test_poison_is_dead_lettered_with_its_reason_and_the_next_message_applies(consent_on_test_broker):
    runtime, broker = consent_on_test_broker
    topic, key, envelope = ban(uuid.uuid4())
    broken = json.loads(envelope.to_bytes())
    broken["data"]["purposes"] = ["telepathy"]
    await broker.publish(json.dumps(broken).encode(), topic=topic, key=b"poison")
    person = uuid.uuid4()
    _topic, key, good = ban(person)
    await broker.publish(good.to_bytes(), topic=topic, key=key.encode())
    reason = await runtime.pool.fetchval("SELECT reason FROM dead_letters WHERE key = $1", b"poison")
    assert reason.startswith("invalid data: purposes.0")
    assert await runtime.pool.fetchval(
        "SELECT status FROM consent_state WHERE person_id = $1", person) == "banned"
