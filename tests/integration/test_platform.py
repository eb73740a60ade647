"""The platform on the real broker and database: outbox, inbox, dead letters (issue 2).

A throwaway service, `probe`, consumes `contact-upserted` and records each event's effect
in its own table, so "exactly once in effect" is a count that could be wrong.
"""
from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from shared.messaging.asyncapi import build_asyncapi
from shared.messaging.handling import EventContext
from shared.messaging.events import ContactReactivated, ContactUpserted, DataSource
from shared.messaging.outbox import Outbox
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from tests.conftest import service_test_settings
from tests.helpers import ExternalSystem, envelope_for, envelopes, eventually, read_topic, until_consumed

PROBE_SQL = """
CREATE TABLE IF NOT EXISTS effects (
    id bigserial PRIMARY KEY, event_id uuid NOT NULL, external_ref text NOT NULL
);
"""


def upsert(ref: str, email: str = "matti.meikalainen@example.fi") -> ContactUpserted:
    return ContactUpserted(external_ref=ref, source=DataSource.b2b_register, first_name="Matti",
                           last_name="Meikäläinen", emails=[email], phones=["+358401234567"])


async def on_contact_upserted(ctx: EventContext) -> None:
    await ctx.store.execute("INSERT INTO effects (event_id, external_ref) VALUES ($1, $2)",
                           ctx.envelope.id, ctx.payload.external_ref)
    await ctx.outbox.add(ContactReactivated(person_id=uuid.uuid5(uuid.NAMESPACE_URL, ctx.payload.external_ref)))


def build_probe(infra, database_url: str, tmp_path: Path, schema: str, **overrides) -> ServiceRuntime:
    migrations = tmp_path / schema
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_effects.sql").write_text(PROBE_SQL)
    settings = ServiceSettings(service_name=schema, **service_test_settings(infra, database_url, **overrides))
    runtime = ServiceRuntime(schema, settings, migrations)
    runtime.subscribe("contact-upserted", on_contact_upserted)
    return runtime


@pytest.fixture
async def probe(infra, database_url, tmp_path):
    runtime = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    await runtime.start()
    yield runtime
    if runtime.started:
        await runtime.stop()


async def _no_backlog(runtime: ServiceRuntime) -> bool:
    return await runtime.relay.backlog() == 0


async def group_passed(bootstrap: str, group: str, record: dict) -> bool:
    """Has `group` committed past `record` (so it has consumed and applied it)?"""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        committed = await reader.committed(TopicPartition("contact-upserted", record["partition"]))
    finally:
        await reader.stop()
    return committed is not None and committed > record["offset"]


async def effects_for(runtime: ServiceRuntime, ref: str) -> int:
    return await runtime.pool.fetchval("SELECT count(*) FROM effects WHERE external_ref = $1", ref)


async def test_event_applied_once_and_its_outbox_event_relayed(infra, probe):
    ref = f"crm-{uuid.uuid4()}"
    async with ExternalSystem(infra.bootstrap) as crm:
        sent = await crm.publish(upsert(ref))
        await crm.publish_envelope("contact-upserted", sent)  # the same event delivered twice
    await eventually(lambda: effects_for(probe, ref))
    person_id = str(uuid.uuid5(uuid.NAMESPACE_URL, ref))
    records = await read_topic(infra.bootstrap, "contact-reactivated",
                               until=lambda rs: any(e["data"]["person_id"] == person_id for e in envelopes(rs)))
    relayed = [e for e in envelopes(records) if e["data"]["person_id"] == person_id]
    assert relayed[0]["correlation_id"] == str(sent.id)  # carried from event to event
    await eventually(lambda: probe.pool.fetchval(
        "SELECT count(*) FROM inbox WHERE event_id = $1", str(sent.id)))
    assert await effects_for(probe, ref) == 1


async def test_malformed_message_is_dead_lettered_and_the_next_applied(infra, probe):
    ref = f"crm-{uuid.uuid4()}"
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish_raw("contact-upserted", b'{"id": "not-a-uuid", "truncated')
        await crm.publish(upsert(ref))
    await eventually(lambda: effects_for(probe, ref))
    row = await eventually(lambda: probe.pool.fetchrow(
        "SELECT reason, original FROM dead_letters WHERE original = $1", b'{"id": "not-a-uuid", "truncated'))
    assert "invalid envelope" in row["reason"]
    dlq = await read_topic(infra.bootstrap, "contact-upserted-dlq", until=lambda rs: any(
        r["value"] == b'{"id": "not-a-uuid", "truncated' and r["headers"].get("x-consumer", "").startswith(probe.name)
        for r in rs))
    mine = [r for r in dlq if r["value"] == b'{"id": "not-a-uuid", "truncated'
            and r["headers"]["x-consumer"].startswith(probe.name)]
    assert "invalid envelope" in mine[0]["headers"]["x-dead-letter-reason"]
    # The AsyncAPI document describes these headers as they really are (issue 17).
    schema = build_asyncapi()["components"]["messages"]["DeadLetter"]["headers"]
    assert list(Draft202012Validator(schema).iter_errors(mine[0]["headers"])) == []


async def test_outbox_row_committed_before_a_crash_is_relayed_on_start(infra, database_url, tmp_path):
    """Killed between commit and publish: the committed event still goes out, once."""
    runtime = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    person_id = uuid.uuid4()
    from shared.db import create_pool, migrate

    pool = await create_pool(runtime.settings.database_url, runtime.name)
    await migrate(pool, runtime.name, runtime.migrations_dir)
    async with pool.acquire() as conn, conn.transaction():  # the state change and its event, then "crash"
        await conn.execute("INSERT INTO effects (event_id, external_ref) VALUES ($1, 'state')", uuid.uuid4())
        await Outbox(conn, runtime.name).add(ContactReactivated(person_id=person_id))
    await pool.close()
    await runtime.start()
    try:
        records = await read_topic(infra.bootstrap, "contact-reactivated", until=lambda rs: any(
            e["data"]["person_id"] == str(person_id) for e in envelopes(rs)))
        assert sum(e["data"]["person_id"] == str(person_id) for e in envelopes(records)) == 1
        await eventually(lambda: _no_backlog(runtime))
    finally:
        await runtime.stop()


async def test_publish_without_mark_republishes_and_the_consumer_applies_once(infra, probe):
    """Killed after publish, before the outbox row was marked: the event goes out twice,
    and the consuming inbox turns the second into a no-op."""
    ref = f"crm-{uuid.uuid4()}"
    _topic, _key, envelope = envelope_for(upsert(ref))
    async with probe.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, 'contact-upserted', $2, $3)",
            envelope.id, ref, envelope.to_json_dict())
    rows = await probe.pool.fetch("SELECT seq, topic, key, envelope, raw, headers FROM outbox WHERE event_id = $1",
                                  envelope.id)
    await probe.relay._publish(rows)  # published, then "crash" before the mark; the relay publishes it again
    await eventually(lambda: probe.pool.fetchval(
        "SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1", envelope.id))
    records = await read_topic(infra.bootstrap, "contact-upserted", until=lambda rs: sum(
        e.get("id") == str(envelope.id) for e in envelopes(rs)) >= 2)
    copies = [r for r in records if envelopes([r]) and envelopes([r])[0].get("id") == str(envelope.id)]
    await eventually(lambda: group_passed(infra.bootstrap, probe.name, copies[-1]), timeout=30)
    assert await effects_for(probe, ref) == 1


async def test_broker_redelivery_after_the_effect_committed_has_no_second_effect(infra, database_url, tmp_path,
                                                                                 monkeypatch):
    """SPEC §8: a service killed between its database commit and its offset commit gets the
    event again from the broker when it comes back; the inbox makes that delivery a no-op.

    The first probe applies the event but never commits an offset (as if killed right after
    each database commit); the second, in the same group, is delivered it again by the broker."""
    import shared.runtime as runtime_module

    schema = f"probe_{uuid.uuid4().hex[:8]}"
    ref = f"crm-{uuid.uuid4()}"
    real_acknowledge = runtime_module._acknowledge

    @asynccontextmanager
    async def killed_before_the_offset_commit(msg, *fetched):  # fetched: the batch's broker epoch and watch
        if getattr(msg.consumer, "_group_id", None) != schema:  # other services: as usual
            async with real_acknowledge(msg, *fetched):
                yield
            return
        yield  # the handler's transaction commits; the offset commit never happens

    monkeypatch.setattr(runtime_module, "_acknowledge", killed_before_the_offset_commit)
    first = build_probe(infra, database_url, tmp_path, schema)
    await first.start()
    try:
        async with ExternalSystem(infra.bootstrap) as crm:
            await crm.publish(upsert(ref))
            [sent] = crm.sent
            await eventually(lambda: effects_for(first, ref))
    finally:
        await first.stop()
    monkeypatch.setattr(runtime_module, "_acknowledge", real_acknowledge)
    second = build_probe(infra, database_url, tmp_path, schema)
    await second.start()
    try:
        await until_consumed(infra.bootstrap, schema, [sent])  # the broker delivered it again, and it is committed
        redelivered = second.metrics.events_duplicate.labels(topic="contact-upserted")._value.get()
        assert redelivered >= 1
        assert await effects_for(second, ref) == 1
    finally:
        await second.stop()


async def test_no_log_line_carries_a_seeded_email_or_phone(infra, database_url, tmp_path):
    import io

    from shared.logging import configure_logging, get_logger

    email, phone = "seeded.person@example.fi", "+358 40 765 4321"
    captured = io.StringIO()
    configure_logging("probe", "DEBUG", stream=captured)
    runtime = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    await runtime.start()
    try:
        ref = f"crm-{uuid.uuid4()}"
        async with ExternalSystem(infra.bootstrap) as crm:
            await crm.publish(upsert(ref, email=email))
            # An invalid event whose values are personal: the dead-letter reason must not echo them.
            bad = upsert(f"crm-{uuid.uuid4()}", email=email).model_dump(mode="json")
            bad["phones"] = phone
            _t, _k, env = envelope_for(upsert(ref))
            await crm.publish_raw("contact-upserted", env.model_copy(update={"data": bad}).to_bytes())
        await eventually(lambda: effects_for(runtime, ref))
        await eventually(lambda: runtime.pool.fetchval("SELECT count(*) FROM dead_letters"))
        get_logger("probe").info("person_seen", email=email, note=f"called {phone} about {email}")
    finally:
        await runtime.stop()
        configure_logging("tests", "INFO")
    text = captured.getvalue()
    assert "event_dead_lettered" in text and "person_seen" in text
    assert email not in text
    assert phone not in text and phone.replace(" ", "") not in text


async def test_an_event_too_large_for_the_broker_is_set_aside_and_does_not_stall_the_relay(infra, probe):
    huge, after = uuid.uuid4(), uuid.uuid4()
    async with probe.pool.acquire() as conn, conn.transaction():
        await Outbox(conn, "test").add_raw("contact-upserted-dlq", "k", b"x" * (1024 * 1024))
        await conn.execute("UPDATE outbox SET event_id = $1 WHERE seq = currval(pg_get_serial_sequence('outbox', 'seq'))",
                           huge)  # this session's row: another writer's may have a higher seq
        await Outbox(conn, probe.name).add(ContactReactivated(person_id=after))
    await read_topic(infra.bootstrap, "contact-reactivated", until=lambda rs: any(
        e["data"]["person_id"] == str(after) for e in envelopes(rs)))
    reason = await eventually(lambda: probe.pool.fetchval(
        "SELECT failed_reason FROM outbox WHERE event_id = $1", huge))
    assert reason.startswith("too large for the broker")


async def test_a_set_aside_event_stays_visible_unpruned_and_can_be_republished(infra, probe, database_url):
    """Issue 20: a row set aside is not marked published, is never pruned while set aside,
    shows in the operator's listing and the metric, and reaches the broker once re-published."""
    from shared.ops import operations as ops

    marker = f"set-aside-{uuid.uuid4()}".encode()
    async with probe.pool.acquire() as conn, conn.transaction():
        await Outbox(conn, "test").add_raw("contact-upserted-dlq", "k", marker + b"x" * (1024 * 1024))
        seq = await conn.fetchval("SELECT currval(pg_get_serial_sequence('outbox', 'seq'))")
    assert await eventually(lambda: probe.pool.fetchval("SELECT failed_reason FROM outbox WHERE seq = $1", seq))
    assert await probe.pool.fetchval("SELECT published_at FROM outbox WHERE seq = $1", seq) is None
    await probe.pool.execute("UPDATE outbox SET created_at = now() - interval '30 days' WHERE seq = $1", seq)
    await probe.relay.prune()
    async with probe.pool.acquire() as conn:
        listed = [r for r in await ops.set_aside_rows(conn, probe.name) if r.seq == seq]
        assert len(listed) == 1 and listed[0].reason.startswith("too large")
        await probe.refresh_gauges()
        assert probe.metrics.outbox_set_aside._value.get() >= 1
        await conn.execute("UPDATE outbox SET raw = $2 WHERE seq = $1", seq, marker)  # the cause is fixed
        assert await ops.republish_set_aside(conn, [f"{probe.name}:{seq}"]) == 1
    await read_topic(infra.bootstrap, "contact-upserted-dlq", until=lambda rs: any(r["value"] == marker for r in rs))
    assert await eventually(lambda: probe.pool.fetchval("SELECT published_at FROM outbox WHERE seq = $1", seq))
