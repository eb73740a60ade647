"""The platform on the real broker and database: outbox, inbox, dead letters (issue 2).

A throwaway service, `probe`, consumes `contact-upserted` and records each event's effect
in its own table, so "exactly once in effect" is a count that could be wrong.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.consumer import EventContext
from shared.events import ContactReactivated, ContactUpserted, DataSource
from shared.outbox import add_event
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from tests.conftest import service_test_settings
from tests.helpers import ExternalSystem, envelopes, eventually, read_topic

PROBE_SQL = """
CREATE TABLE IF NOT EXISTS effects (
    id bigserial PRIMARY KEY, event_id uuid NOT NULL, external_ref text NOT NULL
);
"""


def upsert(ref: str, email: str = "matti.meikalainen@example.fi") -> ContactUpserted:
    return ContactUpserted(external_ref=ref, source=DataSource.b2b_register, first_name="Matti",
                           last_name="Meikäläinen", emails=[email], phones=["+358401234567"])


async def on_contact_upserted(ctx: EventContext) -> None:
    await ctx.conn.execute("INSERT INTO effects (event_id, external_ref) VALUES ($1, $2)",
                           ctx.envelope.id, ctx.payload.external_ref)
    await ctx.publish(ContactReactivated(person_id=uuid.uuid5(uuid.NAMESPACE_URL, ctx.payload.external_ref)))


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
