"""The embedded broker forgets (SPEC §8, issue 11): PostgreSQL is the record.

Each test runs on a broker of its own, so restarting it disturbs no other test. Inputs
arrive through the durable HTTP accept; what services tell each other goes through their
outboxes, which are replayed when the broker comes back empty.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest

from shared.consumer import EventContext
from shared.http import create_http_app
from shared.launcher import Stack
from shared.runtime import ServiceRuntime
from shared.settings import PlatformSettings, ServiceSettings
from shared.stack import free_port
from tests.conftest import service_test_settings
from tests.helpers import auth, envelope_for, eventually
from tests.infra import create_database
from tests.integration.test_platform import build_probe, upsert

pytestmark = pytest.mark.broker_restart

RECEIVER_SQL = "CREATE TABLE IF NOT EXISTS received (event_id uuid NOT NULL, person_id uuid NOT NULL);"


async def on_contact_reactivated(ctx: EventContext) -> None:
    await ctx.conn.execute("INSERT INTO received (event_id, person_id) VALUES ($1, $2)",
                           ctx.envelope.id, ctx.payload.person_id)


def build_receiver(bootstrap: str, database_url: str, tmp_path: Path, infra) -> ServiceRuntime:
    name = f"receiver_{uuid.uuid4().hex[:8]}"
    migrations = tmp_path / name
    migrations.mkdir()
    (migrations / "0001_received.sql").write_text(RECEIVER_SQL)
    settings = ServiceSettings(service_name=name, **service_test_settings(
        infra, database_url, kafka_bootstrap_servers=bootstrap))
    runtime = ServiceRuntime(name, settings, migrations)
    runtime.subscribe("contact-reactivated", on_contact_reactivated)
    return runtime


@pytest.fixture
async def own_stack(infra, tmp_path):
    """A broker of this test's own, managed by the launcher's Stack (PostgreSQL is the session's)."""
    settings = PlatformSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                                database_url=infra.database_url("unused"))
    stack = Stack(settings, root=tmp_path / "stack", services=())
    await stack.start_broker()
    yield stack
    stack.broker.stop()


@pytest.fixture
async def sender_and_receiver(infra, own_stack, tmp_path):
    database_url = await create_database(infra)
    bootstrap = own_stack.settings.kafka_bootstrap_servers
    sender = build_probe(infra, database_url, tmp_path, f"sender_{uuid.uuid4().hex[:8]}",
                         kafka_bootstrap_servers=bootstrap)
    receiver = build_receiver(bootstrap, database_url, tmp_path, infra)
    app = create_http_app(sender, [], description="sender")
    await sender.start()
    await receiver.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender") as client:
        yield sender, receiver, client
    await receiver.stop()
    await sender.stop()


async def stream(client: httpx.AsyncClient, refs: list[str], batch: int = 200) -> None:
    for start in range(0, len(refs), batch):
        events = [json.loads(envelope_for(upsert(ref))[2].model_dump_json()) for ref in refs[start:start + batch]]
        response = await client.post("/events/contact-upserted", json={"events": events}, headers=auth("service"))
        assert response.status_code == 202 and response.json()["accepted"] == len(events)


def expected_person_ids(refs: list[str]) -> set[uuid.UUID]:
    return {uuid.uuid5(uuid.NAMESPACE_URL, ref) for ref in refs}


async def assert_every_effect_once(receiver: ServiceRuntime, refs: list[str]) -> None:
    wanted = expected_person_ids(refs)

    async def all_received() -> bool:
        rows = await receiver.pool.fetch("SELECT person_id FROM received")
        return {r["person_id"] for r in rows} >= wanted

    await eventually(all_received, timeout=60, interval=0.25)
    duplicates = await receiver.pool.fetchval(
        "SELECT count(*) FROM (SELECT person_id FROM received GROUP BY person_id HAVING count(*) > 1) d")
    assert duplicates == 0
    assert await receiver.pool.fetchval("SELECT count(*) FROM received") == len(wanted)


async def test_sigkill_mid_stream_loses_nothing_and_applies_once(own_stack, sender_and_receiver):
    sender, receiver, client = sender_and_receiver
    refs = [f"crm-{uuid.uuid4()}" for _ in range(1200)]
    await stream(client, refs[:600])
    own_stack.broker.kill()  # SIGKILL: every topic and committed offset is gone
    await own_stack.start_broker()
    await stream(client, refs[600:])
    await assert_every_effect_once(receiver, refs)
    assert receiver.metrics.events_duplicate.labels(topic="contact-reactivated")._value.get() > 0  # replays were no-ops


async def test_broker_recycled_past_a_memory_cap_mid_stream(own_stack, sender_and_receiver):
    sender, receiver, client = sender_and_receiver
    refs = [f"crm-{uuid.uuid4()}" for _ in range(2000)]
    baseline_mb = own_stack.broker.rss_bytes() // (1024 * 1024)
    own_stack.settings.rekisteri_broker_memory_cap_mb = baseline_mb + 1
    own_stack.settings.rekisteri_broker_drain_timeout_s = 30
    stop = asyncio.Event()
    supervisor = asyncio.create_task(own_stack.supervise(stop))
    try:
        await stream(client, refs[:1500])
        await eventually(lambda: own_stack.broker_recycles >= 1, timeout=30)  # drained and restarted
        await stream(client, refs[1500:])
        await assert_every_effect_once(receiver, refs)
    finally:
        stop.set()
        await supervisor
    assert own_stack.broker.rss_bytes() // (1024 * 1024) <= baseline_mb + 1  # the new broker is back under the cap
