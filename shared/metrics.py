"""Prometheus metrics of one service (SPEC §7 `/metrics`). Labels carry topics, routes,
groups and partitions, never personal values.

Each service has its own registry (several run in one test process), with the default
process and platform collectors registered on it, so `process_*` and `python_*` are there
as on any Python exporter. `rekisteri_build_info` names the service, version and commit:
the alert rules join on it to label every series with its service (deploy/observability/).
"""
from __future__ import annotations

import os
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


def build_version() -> str:
    try:
        return metadata.version("rekisteri")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_commit() -> str:
    """The commit the image was built from (`docker build --build-arg REKISTERI_COMMIT=...`)."""
    return os.environ.get("REKISTERI_COMMIT", "") or "unknown"


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Info("rekisteri_build", "The running code: service, version and commit",
                               registry=self.registry)
        self.build_info.info({"service": service, "version": build_version(), "commit": build_commit()})
        self.events_consumed = Counter(
            "rekisteri_events_consumed", "Events applied (first delivery)", ["topic"], registry=self.registry)
        self.events_duplicate = Counter(
            "rekisteri_events_duplicate", "Redelivered events the inbox turned into no-ops", ["topic"], registry=self.registry)
        self.events_published = Counter(
            "rekisteri_events_published", "Events relayed from the outbox", ["topic"], registry=self.registry)
        self.events_dead_lettered = Counter(
            "rekisteri_events_dead_lettered", "Events sent to a dead-letter topic", ["topic"], registry=self.registry)
        self.erased_event_skipped = Counter(
            "rekisteri_erased_event_skipped", "Events whose person's data key is destroyed (erased): skipped, not"
            " dead-lettered (issue 15)", ["topic"], registry=self.registry)
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
        self.consumer_partition_lag = Gauge(
            "rekisteri_consumer_partition_lag",
            "End offset minus committed offset of one partition for one consumer group (approximate on the embedded broker)",
            ["group", "topic", "partition"], registry=self.registry)
        self.http_requests = Histogram(
            "rekisteri_http_request_seconds", "HTTP request latency", ["method", "route", "status"],
            registry=self.registry)

    def set_consumer_lag(self, group: str, topic: str, partitions: dict[int, int]) -> None:
        """One group's lag on one topic, per partition (the per-topic sum stays in `consumer_lag`)."""
        for partition, lag in partitions.items():
            self.consumer_partition_lag.labels(group=group, topic=topic, partition=str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)
