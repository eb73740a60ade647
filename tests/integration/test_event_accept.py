"""The durable HTTP accept for other systems (SPEC §8, issue 11): 202 only after the
PostgreSQL commit, and the same (source, id) dedupe as the topic path."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest

from shared.web.http import create_http_app
from tests.helpers import ExternalSystem, auth, envelope_for, eventually
from tests.integration.test_platform import build_probe, effects_for, upsert


@pytest.fixture
async def probe_http(infra, database_url, tmp_path):
    runtime = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    app = create_http_app(runtime, [], description="probe")
    await runtime.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        yield runtime, client
    await runtime.stop()


def as_service(runtime) -> dict[str, str]:
    """A service token for the probe (tokens name the services they are for)."""
    return auth("service", audience=runtime.name)


def envelope_json(ref: str, **kw) -> dict:
    return json.loads(envelope_for(upsert(ref), **kw)[2].model_dump_json())


async def test_duplicates_within_and_across_batches_apply_once(probe_http):
    runtime, client = probe_http
    ref = f"crm-{uuid.uuid4()}"
    event = envelope_json(ref)
    first = await client.post("/events/contact-upserted", json={"events": [event, event]}, headers=as_service(runtime))
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert await effects_for(runtime, ref) == 1  # committed before the 202
    again = await client.post("/events/contact-upserted", json={"events": [event]}, headers=as_service(runtime))
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert await effects_for(runtime, ref) == 1


async def test_http_then_kafka_with_the_same_id_applies_once(infra, probe_http):
    runtime, client = probe_http
    ref = f"crm-{uuid.uuid4()}"
    _topic, _key, envelope = envelope_for(upsert(ref))
    response = await client.post("/events/contact-upserted", json={"events": [json.loads(envelope.model_dump_json())]},
                                 headers=as_service(runtime))
    assert response.json()["accepted"] == 1
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish_envelope("contact-upserted", envelope)
    await eventually(lambda: runtime.metrics.events_duplicate.labels(topic="contact-upserted")._value.get() >= 1)
    assert await effects_for(runtime, ref) == 1


async def test_batch_with_invalid_events_accepts_the_valid_and_reports_each_invalid(probe_http):
    runtime, client = probe_http
    good_refs = [f"crm-{uuid.uuid4()}" for _ in range(3)]
    bad_data = envelope_json(f"crm-{uuid.uuid4()}")
    bad_data["data"]["emails"] = "not-a-list"
    wrong_type = envelope_json(f"crm-{uuid.uuid4()}")
    wrong_type["type"] = "usage-recorded"
    events = [envelope_json(good_refs[0]), bad_data, envelope_json(good_refs[1]), "not an object",
              wrong_type, envelope_json(good_refs[2])]
    response = await client.post("/events/contact-upserted", json={"events": events}, headers=as_service(runtime))
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [1, 3, 4]
    assert body["rejected"][0]["reason"].startswith("invalid data: emails")
    assert body["rejected"][1]["reason"].startswith("invalid envelope")
    assert "does not belong on topic" in body["rejected"][2]["reason"]
    for ref in good_refs:
        assert await effects_for(runtime, ref) == 1
    # The three came over HTTP (no partition); older messages on the topic may add their own.
    assert await runtime.pool.fetchval("SELECT count(*) FROM dead_letters WHERE partition IS NULL") == 3


async def test_accept_requires_a_service_token_and_a_known_topic(probe_http):
    runtime, client = probe_http
    event = envelope_json(f"crm-{uuid.uuid4()}")
    assert (await client.post("/events/contact-upserted", json={"events": [event]})).status_code == 401
    denied = await client.post("/events/contact-upserted", json={"events": [event]}, headers=auth("marketing", audience=runtime.name))
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    unknown = await client.post("/events/usage-recorded", json={"events": [event]}, headers=as_service(runtime))
    assert unknown.status_code == 404 and "topic" in unknown.json()["fields"]
    too_many = await client.post("/events/contact-upserted", json={"events": [event] * 10_001}, headers=as_service(runtime))
    assert too_many.status_code == 422 and "events" in too_many.json()["fields"]


async def test_concurrent_accepts_report_each_event_by_its_own_outcome(start_service):
    """Issue 21: two HTTP accepts in flight at once. The first batch holds a poison event, so
    its events are applied one by one; while its good event is being applied, the second
    batch's duplicate commits. The first must still report its event accepted: the outcome
    comes from the apply itself, not from a shared duplicate counter read before and after."""
    import asyncio
    from types import SimpleNamespace

    from shared.messaging.consumer import InboxConsumer
    from shared.messaging.parsing import Incoming
    from shared.messaging.events import ContactReactivated
    from shared.messaging.outbox import build_envelope
    from shared.metrics import Metrics

    svc = await start_service("retention")
    poison, gated, duplicate = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    entered, gate = asyncio.Event(), asyncio.Event()

    async def handler(ctx):
        if ctx.payload.person_id == poison:
            raise RuntimeError("poison event")
        if ctx.payload.person_id == gated:
            entered.set()
            await gate.wait()

    host = SimpleNamespace(name=f"accept_{uuid.uuid4().hex[:6]}", settings=svc.runtime.settings,
                           metrics=Metrics(f"accept_{uuid.uuid4().hex[:6]}"), pool=svc.runtime.pool,
                           store_for=lambda conn: conn)
    consumer = InboxConsumer(host, "contact-reactivated", handler=handler)

    def message(person_id: uuid.UUID) -> Incoming:
        return Incoming(build_envelope(ContactReactivated(person_id=person_id), source="crm")[2].to_bytes())

    repeated = message(duplicate)
    assert (await consumer.handle_batch([repeated], wait_for_database=False)).accepted == 1
    first = asyncio.create_task(consumer.handle_batch([message(poison), message(gated)], wait_for_database=False))
    await asyncio.wait_for(entered.wait(), timeout=30)
    second = await consumer.handle_batch([repeated], wait_for_database=False)
    gate.set()
    outcome = await asyncio.wait_for(first, timeout=30)
    assert (second.accepted, second.duplicates) == (0, 1)
    assert (outcome.accepted, outcome.duplicates) == (1, 0)
    assert [r["index"] for r in outcome.rejected] == [0]
