"""One trace from an HTTP request to the next service's event (issue 17, issue 21; SPEC §8).

On the real broker and database: a request to service A writes an event to its outbox (the
row keeps the request's `traceparent`), A's relay sends it with that header, service B's
consumer opens a span for applying it in the same trace, and the event B's handler writes
carries the trace on, as the relay's Kafka header. Correlation ids are carried as before.
Spans go to an in-memory exporter; nothing is exported anywhere.
"""
from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from jsonschema import Draft202012Validator
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.messaging.asyncapi import build_asyncapi
from shared.messaging.outbox import Outbox
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from tests.conftest import service_test_settings
from tests.helpers import envelopes, eventually, read_topic
from tests.integration.test_platform import build_probe, upsert


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield provider, exporter
    tracing.use_provider(None)
    AsyncPGInstrumentor().uninstrument()
    provider.shutdown()


def _web_app(runtime: ServiceRuntime, provider: TracerProvider) -> FastAPI:
    """Service A: one route that records an upsert through the outbox, as every route does."""
    app = FastAPI()

    @app.post("/contacts/{ref}")
    async def record(ref: str) -> dict[str, str]:
        async with runtime.pool.acquire() as conn, conn.transaction():
            envelope = await Outbox(conn, runtime.name, f"req-{ref}").add(upsert(ref))
        return {"id": str(envelope.id)}

    tracing.instrument_app(app, tracer_provider=provider)
    return app


def _trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def test_a_requests_trace_reaches_the_consumers_span_and_the_event_it_publishes(
        infra, database_url, tmp_path, spans):
    provider, exporter = spans
    settings = ServiceSettings(service_name="web", **service_test_settings(infra, database_url))
    web = ServiceRuntime(f"web_{uuid.uuid4().hex[:8]}", settings, None)
    consumer = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    await web.start()
    await consumer.start()
    ref = f"crm-{uuid.uuid4()}"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_web_app(web, provider)),
                                     base_url="http://web") as client:
            answer = await client.post(f"/contacts/{ref}")
        assert answer.status_code == 200
        (request_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        trace_id = format(request_span.context.trace_id, "032x")

        stored = await web.pool.fetchval("SELECT traceparent FROM outbox WHERE event_id = $1",
                                         uuid.UUID(answer.json()["id"]))
        assert _trace_id(stored) == trace_id  # the row keeps the writing transaction's context

        def consumer_spans():  # the group reads the topic's history too: other traces, or none
            return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER
                    and s.attributes["messaging.consumer.group.name"] == consumer.name
                    and format(s.context.trace_id, "032x") == trace_id]
        (applied,) = await eventually(consumer_spans)
        assert applied.parent is not None and applied.parent.is_remote
        assert applied.attributes["messaging.destination.name"] == "contact-upserted"

        person_id = str(uuid.uuid5(uuid.NAMESPACE_URL, ref))
        records = await read_topic(infra.bootstrap, "contact-reactivated", until=lambda rs: any(
            e.get("data", {}).get("person_id") == person_id for e in envelopes(rs)))
        (onward,) = [r for r in records if person_id.encode() in r["value"]]
        assert _trace_id(onward["headers"]["traceparent"]) == trace_id
        assert onward["headers"]["traceparent"].split("-")[2] == format(applied.context.span_id, "016x")
        assert onward["headers"]["correlation_id"] == f"req-{ref}"  # correlation ids as before
        # The AsyncAPI document's headers are the ones the relay really sets.
        schema = build_asyncapi()["components"]["messages"]["ContactReactivated"]["headers"]
        assert list(Draft202012Validator(schema).iter_errors(onward["headers"])) == []
    finally:
        await consumer.stop()
        await web.stop()


async def test_with_tracing_off_no_trace_context_is_stored_or_sent(infra, database_url, tmp_path):
    """Off by default: no column value, no header, no span (nothing costs on the event paths)."""
    assert not tracing.active()
    consumer = build_probe(infra, database_url, tmp_path, f"probe_{uuid.uuid4().hex[:8]}")
    await consumer.start()
    ref = f"crm-{uuid.uuid4()}"
    try:
        async with consumer.pool.acquire() as conn, conn.transaction():
            await Outbox(conn, consumer.name).add(upsert(ref))
        person_id = str(uuid.uuid5(uuid.NAMESPACE_URL, ref))
        records = await read_topic(infra.bootstrap, "contact-reactivated", until=lambda rs: any(
            e.get("data", {}).get("person_id") == person_id for e in envelopes(rs)))
        (onward,) = [r for r in records if person_id.encode() in r["value"]]
        assert "traceparent" not in onward["headers"]
        assert await eventually(lambda: consumer.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE traceparent IS NULL AND published_at IS NOT NULL")) >= 2
    finally:
        await consumer.stop()
