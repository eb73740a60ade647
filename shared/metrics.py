"""Prometheus metrics of one service (SPEC §7 `/metrics`). Labels carry topics and
routes, never personal values."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.events_consumed = Counter(
            "rekisteri_events_consumed", "Events applied (first delivery)", ["topic"], registry=self.registry)
        self.events_duplicate = Counter(
            "rekisteri_events_duplicate", "Redelivered events the inbox turned into no-ops", ["topic"], registry=self.registry)
        self.events_published = Counter(
            "rekisteri_events_published", "Events relayed from the outbox", ["topic"], registry=self.registry)
        self.events_dead_lettered = Counter(
            "rekisteri_events_dead_lettered", "Events sent to a dead-letter topic", ["topic"], registry=self.registry)
        self.handler_seconds = Histogram(
            "rekisteri_handler_seconds", "Time to apply one event or batch", ["topic"], registry=self.registry)
        self.outbox_backlog = Gauge(
            "rekisteri_outbox_backlog", "Outbox rows not yet relayed", registry=self.registry)
        self.outbox_set_aside = Gauge(
            "rekisteri_outbox_set_aside", "Outbox rows set aside (e.g. too large for the broker), kept until re-published",
            registry=self.registry)
        self.consumer_lag = Gauge(
            "rekisteri_consumer_lag", "Approximate consumer lag (approximate on the embedded broker, SPEC §8)",
            ["topic"], registry=self.registry)
        self.http_requests = Histogram(
            "rekisteri_http_request_seconds", "HTTP request latency", ["method", "route", "status"],
            registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
