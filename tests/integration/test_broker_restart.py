"""The embedded broker forgets (SPEC §8, issue 11): PostgreSQL is the record.

Each test runs on a broker of its own, so restarting it disturbs no other test. Inputs
arrive through the durable HTTP accept; what services tell each other goes through their
outboxes, which are replayed when the broker comes back empty.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from shared.messaging.handling import EventContext
from shared.messaging.events import UsageRecorded
from shared.web.http import create_http_app
from shared.ops.launcher import Stack
from shared.runtime import ServiceRuntime
from shared.settings import PlatformSettings, ServiceSettings
from shared.ops.stack import free_port
from tests.conftest import service_test_settings
from tests.helpers import auth, envelope_for, eventually
from shared.messaging.kafka import ensure_topics, publish_incarnation
from tests.infra import create_database
from tests.integration.test_platform import build_probe, upsert

pytestmark = pytest.mark.broker_restart

RECEIVER_SQL = "CREATE TABLE IF NOT EXISTS received (event_id uuid NOT NULL, person_id uuid NOT NULL);"


async def on_contact_reactivated(ctx: EventContext) -> None:
    await ctx.store.execute("INSERT INTO received (event_id, person_id) VALUES ($1, $2)",
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
    # A service token for the sender probe (tokens name the services they are for).
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender",
                                 headers=auth("service", audience=sender.name)) as client:
        yield sender, receiver, client
    await receiver.stop()
    await sender.stop()


async def stream(client: httpx.AsyncClient, refs: list[str], batch: int = 200) -> None:
    for start in range(0, len(refs), batch):
        events = [json.loads(envelope_for(upsert(ref))[2].model_dump_json()) for ref in refs[start:start + batch]]
        response = await client.post("/events/contact-upserted", json={"events": events})
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


async def test_sigkill_mid_stream_across_the_four_services(infra, own_stack):
    """Issue 11: contacts → consent / retention, and usage → billing, across a broker SIGKILL.
    Inputs go through the durable HTTP accepts; what the services tell each other is replayed
    from their outboxes; every effect is present exactly once afterwards."""
    database_url = await create_database(infra)
    bootstrap = own_stack.settings.kafka_bootstrap_servers
    apps, clients = {}, {}
    for name in ("contacts", "consent", "retention", "billing"):
        module = importlib.import_module(f"services.{name}.app")
        settings = module.SETTINGS(**service_test_settings(infra, database_url, kafka_bootstrap_servers=bootstrap,
                                                           billing_auto_close=False))
        apps[name] = module.build_app(settings)
        await apps[name].state.runtime.start()
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[name]), base_url=f"http://{name}")
    pools = {name: app.state.runtime.pool for name, app in apps.items()}
    try:
        billing = clients["billing"]
        assert (await billing.put("/billing/meters/bt_calls", json={"aggregation": "sum", "dimensions": ["region"]},
                                  headers=auth("billing"))).status_code == 200
        customer = uuid.uuid4()
        assert (await billing.put(f"/billing/customers/{customer}/plan", json={"flat_fee": "0", "components": []},
                                  headers=auth("billing"))).status_code == 200
        refs = [f"b2b-{uuid.uuid4()}" for _ in range(120)]
        people = [json.loads(envelope_for(upsert(ref, email=f"p{i}@example.fi"))[2].model_dump_json())
                  for i, ref in enumerate(refs)]
        now = datetime.now(UTC)
        usage = [json.loads(envelope_for(UsageRecorded(customer_id=customer, meter="bt_calls", quantity=Decimal("1.25"),
                                                        time=now, dimensions={"region": "fi"}), source="cloud")[2]
                            .model_dump_json()) for _ in range(1000)]

        async def send(people_part: list, usage_part: list, *, retry: bool = False) -> None:
            for topic, client, events in (("contact-upserted", clients["contacts"], people_part),
                                          ("usage-recorded", billing, usage_part)):
                response = await client.post(f"/events/{topic}", json={"events": events}, headers=auth("service"))
                expected = {"accepted": 0, "duplicates": len(events)} if retry else {"accepted": len(events),
                                                                                      "duplicates": 0}
                assert response.status_code == 202, response.text
                assert {k: response.json()[k] for k in expected} == expected

        await send(people[:60], usage[:500])
        own_stack.broker.kill()  # SIGKILL mid-stream: every topic and committed offset is gone
        await own_stack.start_broker()
        await send(people[60:], usage[500:])
        await send(people[:10], usage[:100], retry=True)  # a sender's retry after the crash: no effect

        person_ids = await eventually(lambda: _all_registered(pools["contacts"], refs), timeout=60)

        async def consent_and_retention_know_everyone() -> bool:
            consent = await pools["consent"].fetchval(
                "SELECT count(DISTINCT person_id) FROM contact_point WHERE person_id = ANY($1::uuid[])", person_ids)
            retention = await pools["retention"].fetchval(
                "SELECT count(*) FROM persons WHERE person_id = ANY($1::uuid[])", person_ids)
            return consent == len(refs) and retention == len(refs)

        await eventually(consent_and_retention_know_everyone, timeout=90, interval=0.25)
        totals = await pools["billing"].fetchrow(
            "SELECT sum(quantity_sum) AS quantity, sum(event_count) AS events FROM usage_aggregates"
            " WHERE customer_id = $1", customer)
        assert totals["events"] == 1000 and totals["quantity"] == Decimal("1250.00")
        assert await pools["contacts"].fetchval(
            "SELECT count(*) FROM persons WHERE external_ref = ANY($1::text[])", refs) == len(refs)
    finally:
        for name in reversed(list(apps)):
            await clients[name].aclose()
            await apps[name].state.runtime.stop()


async def _all_registered(pool, refs: list[str]) -> list[uuid.UUID] | None:
    rows = await pool.fetch("SELECT id FROM persons WHERE external_ref = ANY($1::text[])", refs)
    return [r["id"] for r in rows] if len(rows) == len(refs) else None



async def _received_people(receiver: ServiceRuntime) -> set[uuid.UUID]:
    return {r["person_id"] for r in await receiver.pool.fetch("SELECT person_id FROM received")}


async def _has_all(receiver: ServiceRuntime, people: list[uuid.UUID]) -> bool:
    return not set(people) - await _received_people(receiver)


async def _incarnation_seen(receiver: ServiceRuntime, incarnation: str) -> bool:
    return str(await receiver.pool.fetchval("SELECT incarnation FROM broker_state")) == incarnation


async def held_receiver(infra, bootstrap: str, tmp_path: Path
                        ) -> tuple[ServiceRuntime, uuid.UUID, asyncio.Event, asyncio.Event]:
    """A started receiver whose batch holding `blocker`'s event stays in its transaction
    (`entered` set) until `release` is set."""
    blocker, entered, release = uuid.uuid4(), asyncio.Event(), asyncio.Event()

    async def held_at_the_blocker(ctx: EventContext) -> None:
        if ctx.payload.person_id == blocker:
            entered.set()
            await release.wait()
        await on_contact_reactivated(ctx)

    receiver = build_receiver(bootstrap, await create_database(infra), tmp_path, infra)
    receiver.consumers["contact-reactivated"].handler = held_at_the_blocker
    await receiver.start()
    return receiver, blocker, entered, release


async def test_a_batch_from_the_old_broker_committed_on_the_new_one_does_not_make_its_log_start_skipped(
        infra, own_stack, tmp_path):
    """SPEC §8, issue 20 (found by the chaos soak: missed registrations and incarnation markers).
    A batch fetched from the broker before its SIGKILL finishes its transaction after the
    broker is back empty: its offset commit (a position far into the old log) lands on the new
    broker. The refilled log grows past that position, and the consumer, rejoining, must not
    start there: every event published after the restart is applied, and the new incarnation
    marker (at the new log's start) is seen, so this service would replay its outbox."""
    from shared.messaging.events import ContactReactivated
    from tests.helpers import ExternalSystem

    bootstrap = own_stack.settings.kafka_bootstrap_servers
    receiver, blocker, entered, release = await held_receiver(infra, bootstrap, tmp_path)
    try:
        async with ExternalSystem(bootstrap) as system:
            before = [uuid.uuid4() for _ in range(300)]  # ~100 a partition: positions far into the old log
            await system.send_many("contact-reactivated", (_reactivated(p) for p in before), key=None)
            await eventually(lambda: _has_all(receiver, before))
            await system.publish(ContactReactivated(person_id=blocker))
        await eventually(entered.is_set)
        own_stack.broker.kill()  # SIGKILL: every topic and committed offset is gone
        own_stack.broker.start()
        await ensure_topics(bootstrap)
        release.set()  # the old batch commits its old positions, now on the new broker
        async with ExternalSystem(bootstrap) as system:
            after = [uuid.uuid4() for _ in range(600)]  # the refilled log passes the old positions
            await system.send_many("contact-reactivated", (_reactivated(p) for p in after), key=None)
        incarnation = await publish_incarnation(bootstrap)
        await eventually(lambda: _has_all(receiver, after), timeout=60, interval=0.25)
        await eventually(lambda: _incarnation_seen(receiver, incarnation), timeout=60, interval=0.25)
    finally:
        release.set()
        await receiver.stop()


def _reactivated(person: uuid.UUID) -> bytes:
    from shared.messaging.events import ContactReactivated

    return envelope_for(ContactReactivated(person_id=person))[2].to_bytes()


async def test_a_service_whose_consumer_is_held_in_a_batch_replays_its_outbox_when_the_broker_comes_back(
        infra, own_stack, tmp_path):
    """SPEC §8, issue 20 (the supervision test's flake): the replay after a broker restart
    waited for the service's consumer to reach the new marker on the topic; a consumer held in
    a long batch (or one that had not read the first marker before the broker died) left the
    outbox unreplayed. The incarnation watch hands the marker over itself."""
    from shared.messaging.events import ContactReactivated
    from tests.helpers import ExternalSystem

    bootstrap = own_stack.settings.kafka_bootstrap_servers
    receiver, blocker, entered, release = await held_receiver(infra, bootstrap, tmp_path)
    try:
        assert receiver.relay is not None
        replays: list[bool] = []
        asked = receiver.relay.request_replay
        receiver.relay.request_replay = lambda: (replays.append(True), asked())[1]  # type: ignore[method-assign]
        first = await eventually(lambda: receiver.pool.fetchval("SELECT incarnation FROM broker_state"))
        async with ExternalSystem(bootstrap) as system:
            await system.publish(ContactReactivated(person_id=blocker))
        await eventually(entered.is_set)
        own_stack.broker.kill()
        own_stack.broker.start()
        await ensure_topics(bootstrap)
        incarnation = await publish_incarnation(bootstrap)
        await eventually(lambda: _incarnation_seen(receiver, incarnation), timeout=60, interval=0.25)
        assert not release.is_set() and replays == [True] and str(first) != incarnation
    finally:
        release.set()
        await receiver.stop()
