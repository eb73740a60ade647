"""Tracing (issue 17): off by default, the trace context round-trips through the headers an
outbox row and a Kafka message carry, a consumer's span continues the producer's trace, and
the FastAPI instrumentation never records a query string (searches carry personal data)."""
from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shared import tracing

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = SpanContext(trace_id=TRACE_ID, span_id=0x00F067AA0BA902B7, is_remote=True,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_tracing_is_off_without_an_otlp_endpoint():
    assert tracing.build_provider("billing", {}) is None
    assert tracing.build_provider("billing", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                              "OTEL_SDK_DISABLED": "true"}) is None


def test_an_endpoint_turns_on_an_exporting_provider_named_after_the_service():
    provider = tracing.build_provider("billing", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    try:
        attributes = provider.resource.attributes
        assert attributes["service.name"] == "rekisteri-billing" and attributes["service.namespace"] == "rekisteri"
    finally:
        provider.shutdown()


def test_inject_writes_the_current_context_as_traceparent_and_keeps_other_headers():
    ctx = trace.set_span_in_context(NonRecordingSpan(PARENT))
    carrier = tracing.inject({"x-correlation-id": "c-1"}, ctx)
    assert carrier == {"x-correlation-id": "c-1", "traceparent": TRACEPARENT}


def test_outside_a_trace_inject_adds_nothing():
    assert tracing.inject({"a": "b"}) == {"a": "b"}


@pytest.mark.parametrize("headers", [
    {"traceparent": TRACEPARENT},                       # an outbox row's stored headers
    [("traceparent", TRACEPARENT.encode())],            # aiokafka's header list
    [("TraceParent", TRACEPARENT.encode()), ("x-other", b"1")],
])
def test_extract_reads_the_context_from_row_or_kafka_headers(headers):
    span_context = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert span_context.trace_id == TRACE_ID and span_context.is_remote


def test_stored_headers_survive_the_kafka_header_form():
    stored = tracing.inject({}, trace.set_span_in_context(NonRecordingSpan(PARENT)))
    assert trace.get_current_span(tracing.extract(tracing.kafka_headers(stored))).get_span_context() == PARENT


def test_a_consumer_span_continues_the_producers_trace_and_passes_it_on(spans, monkeypatch):
    provider, exporter = spans
    monkeypatch.setattr(tracing.trace, "get_tracer", lambda name: provider.get_tracer(name))
    with tracing.consumer_span("contact-upserted", [("traceparent", TRACEPARENT.encode())], consumer="consent"):
        onward = tracing.inject({})  # what this consumer's own outbox row would carry
        ids = tracing.current_ids()
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_id == TRACE_ID and span.parent.span_id == PARENT.span_id
    assert span.kind is trace.SpanKind.CONSUMER and span.attributes["messaging.destination.name"] == "contact-upserted"
    assert onward["traceparent"].split("-")[1] == format(TRACE_ID, "032x")
    assert ids["trace_id"] == format(TRACE_ID, "032x")
    assert tracing.current_ids() == {}  # detached after the message


async def test_http_request_joins_the_callers_trace_and_records_no_query_string(spans):
    """HTTP → outbox: the handler's inject() carries the caller's trace; the search terms
    of the query string (personal data) are in no span attribute."""
    provider, exporter = spans
    app = FastAPI()

    @app.get("/persons")
    async def search(email: str | None = None) -> dict:
        return tracing.inject({})

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    tracing.instrument_app(app, tracer_provider=provider)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            carried = (await client.get("/persons", params={"email": "maija.virtanen@example.fi"},
                                        headers={"traceparent": TRACEPARENT})).json()
            await client.get("/healthz")
    finally:
        AsyncPGInstrumentor().uninstrument()  # the rest of the suite's asyncpg stays as it was
    assert carried["traceparent"].split("-")[1] == format(TRACE_ID, "032x")
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["GET /persons"]  # probes are not traced
    recorded = " ".join(str(v) for s in finished for v in s.attributes.values())
    assert "maija" not in recorded and "example.fi" not in recorded and "email=" not in recorded


def test_off_the_event_paths_store_and_open_nothing():
    """Tracing off (the default): no traceparent for an outbox row, no batch span (issue 17)."""
    assert not tracing.active()
    with trace.use_span(NonRecordingSpan(PARENT)):
        assert tracing.current_traceparent() is None
    with tracing.batch_span("usage-recorded", [[("traceparent", TRACEPARENT.encode())]], consumer="billing") as span:
        assert span is None


def test_on_an_outbox_row_keeps_the_current_traceparent_and_a_batch_span_links_its_events(spans):
    provider, exporter = spans
    tracing.use_provider(provider)
    try:
        with trace.use_span(NonRecordingSpan(PARENT)):
            assert tracing.current_traceparent() == TRACEPARENT
        with tracing.batch_span("usage-recorded", [[("traceparent", TRACEPARENT.encode())], None, []],
                                consumer="billing.usage-recorded"):
            pass
    finally:
        tracing.use_provider(None)
    (span,) = exporter.get_finished_spans()
    assert [link.context.trace_id for link in span.links] == [TRACE_ID]
    assert span.attributes["messaging.consumer.group.name"] == "billing.usage-recorded"
