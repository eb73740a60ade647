"""OpenTelemetry tracing: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (issue 17).

One trace follows a change from the HTTP request that made it, through the outbox row that
records it, to each consumer that applies it: W3C trace context (`traceparent`) travels in
the outbox row's headers and from there in the Kafka message's headers.

- `configure(service)` (at `rekisteri serve`): a tracer provider exporting OTLP over HTTP,
  when the endpoint is set; the standard `OTEL_*` variables tune the exporter.
- `instrument_app(app)`: the official FastAPI instrumentation (probes and /metrics left
  out, query strings never recorded: a search carries names and e-mail addresses), plus
  asyncpg's (statements are parameterised: no values in spans).
- `inject(headers)` where an event is written to the outbox (in the request's context);
  `extract(headers)` / `consumer_span(...)` where a consumer applies it.

Off (no provider installed), nothing is extracted, injected or opened on the event paths:
`active()` is checked once per batch or outbox write, so tracing off costs nothing measurable
on bulk ingestion (bench/billing_bench.py). The outbox row keeps `traceparent` in a column of
its own (shared/sql/0004_outbox_traceparent.sql); the relay sends it as a Kafka header.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
UNTRACED_ROUTES = "healthz,readyz,metrics"
TRACER_NAME = "rekisteri"
_URL_ATTRIBUTES = ("http.url", "url.full")
_QUERY_ATTRIBUTES = ("url.query",)
_TARGET_ATTRIBUTES = ("http.target",)

Headers = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
_provider: Any = None  # the provider events are traced with; None: tracing is off


def active() -> bool:
    """Is a provider installed (`configure`, or a test's `use_provider`)? Off, the event paths skip tracing."""
    return _provider is not None


def use_provider(provider: Any) -> None:
    """Trace events with `provider` (None: off again). `configure` calls it; tests pass an
    in-memory one (the global provider can be set only once per process)."""
    global _provider
    _provider = provider


def _tracer() -> Any:
    return _provider.get_tracer(TRACER_NAME) if _provider is not None else trace.get_tracer(TRACER_NAME)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def build_provider(service: str, environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A provider that batches spans to the OTLP endpoint, or None when tracing is off."""
    if not enabled(environ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from shared.metrics import build_commit, build_version

    resource = Resource.create({"service.name": f"rekisteri-{service}", "service.namespace": "rekisteri",
                                "service.version": build_version(), "vcs.ref.head.revision": build_commit()})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def configure(service: str) -> bool:
    """Install the exporting provider for this process; False (nothing changed) when off."""
    provider = build_provider(service)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    use_provider(provider)
    return True


def _without_query(span: Any, _scope: dict[str, Any]) -> None:
    """Query strings hold search terms (names, e-mail addresses, phones): never in a span."""
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        if key in attributes:
            parts = urlsplit(str(attributes[key]))
            span.set_attribute(key, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    for key in _TARGET_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, str(attributes[key]).split("?", 1)[0])
    for key in _QUERY_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, "")


def instrument_app(app: Any, tracer_provider: Any = None) -> None:
    """The official FastAPI and asyncpg instrumentations (no-ops until a provider exports)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, excluded_urls=UNTRACED_ROUTES,
                                       server_request_hook=_without_query, exclude_spans=["receive", "send"])
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]  # its __init__ is unannotated
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)


def inject(headers: dict[str, str] | None = None, ctx: Context | None = None) -> dict[str, str]:
    """`headers` plus the current (or given) trace context: `traceparent`, `tracestate`.

    Call where the event is written to the outbox, inside the request's span, and store the
    result with the row; the relay copies it into the Kafka message's headers.
    """
    carrier = dict(headers or {})
    propagate.inject(carrier, context=ctx)
    return carrier


def _as_text_mapping(headers: Headers | None) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {str(k).lower(): (v.decode("latin-1") if isinstance(v, bytes) else str(v))
            for k, v in items if v is not None}


def extract(headers: Headers | None) -> Context:
    """The trace context a message carries: a dict or Kafka's [(name, bytes)] list."""
    return propagate.extract(_as_text_mapping(headers))


@contextmanager
def consumer_span(topic: str, headers: Headers | None, *, consumer: str) -> Iterator[Any]:
    """A span for applying one message, child of the trace that produced it. Attributes name
    the topic and group only (never keys or payload: they may identify a person)."""
    tracer = _tracer()
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic,
                  "messaging.operation.type": "process", "messaging.consumer.group.name": consumer}
    # No headers (an HTTP batch): a child of the current span, the request's.
    token = otel_context.attach(extract(headers)) if headers is not None else None
    try:
        with tracer.start_as_current_span(f"process {topic}", kind=trace.SpanKind.CONSUMER,
                                          attributes=attributes) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, for the outbox row being written; None when
    tracing is off or outside a trace."""
    if _provider is None:
        return None
    return inject().get("traceparent")


@contextmanager
def batch_span(topic: str, headers: Iterable[Headers | None], *, consumer: str) -> Iterator[Any]:
    """One span for a bulk batch (only while tracing is on), linked to each event's trace:
    what the batch handler writes to the outbox carries this span's context."""
    if _provider is None:
        yield None
        return
    links = [trace.Link(ctx) for ctx in (trace.get_current_span(extract(h)).get_span_context() for h in headers)
             if ctx.is_valid]
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic,
                  "messaging.operation.type": "process", "messaging.consumer.group.name": consumer,
                  "messaging.batch.message_count": len(links)}
    with _tracer().start_as_current_span(f"process {topic}", kind=trace.SpanKind.CONSUMER, links=links,
                                         attributes=attributes) as span:
        yield span


def kafka_headers(carrier: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """A stored carrier as aiokafka's header list."""
    return [(key, value.encode("latin-1")) for key, value in carrier.items()]


def current_ids() -> dict[str, str]:
    """trace_id/span_id of the current span, for log lines (empty outside a trace)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": format(span_context.trace_id, "032x"), "span_id": format(span_context.span_id, "016x")}
