"""Consumer lag per group and topic, from committed and end offsets (approximate on the
embedded broker, SPEC §8). Read by the service runtime for its metric and by the CLI.

A lag is never negative: on the embedded broker an end offset is the last batch's base
offset + 1, and after a broker restart a consumer may commit a position it reached on the
broker before (its new log starts again at 0); both put a committed offset past the end.
Such a partition has nothing left to consume, so its lag counts as 0."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from shared.messaging.topics import CATALOGUE
from shared.settings import SERVICE_NAMES

INCARNATION_TOPIC = "rekisteri-broker-incarnation"


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partitions: int
    lag: int  # end offset − committed offset (at least 0), summed over the group's partitions of the topic
    by_partition: dict[int, int] = field(default_factory=dict)  # partition → its lag
    approximate: bool = False  # measured on the embedded broker (see the module's docstring)


def partition_lag(end: int, committed: int) -> int:
    """What is left to consume on one partition: never below 0 (see the module's docstring)."""
    return max(0, end - committed)


def default_groups() -> list[str]:
    """The register's groups: `<service>` for per-event topics, `<service>.<topic>` for batch ones."""
    groups = list(SERVICE_NAMES)
    for spec in CATALOGUE.values():
        groups += [f"{service}.{spec.name}" for service in spec.consumers if service in SERVICE_NAMES]
    return groups


def _partitions_of_group(group: str, partitions: list[Any]) -> list[Any]:
    """Only the topics a register group can have offsets on; any other group: every topic."""
    service, _, topic_name = group.partition(".")
    if service not in SERVICE_NAMES:
        return partitions
    if topic_name:
        wanted = {topic_name}
    else:
        wanted = {t.name for t in CATALOGUE.values() if service in t.consumers} | {INCARNATION_TOPIC}
    return [tp for tp in partitions if tp.topic in wanted]


async def consumer_lag(bootstrap_servers: str, groups: list[str] | None = None, *,
                       progress: Callable[[int], Any] | None = None,
                       client_options: dict[str, Any] | None = None) -> list[Lag]:
    """Lag per consumer group and topic, from the group's committed and the topics' end offsets.

    Groups without committed offsets are left out. On the embedded broker the figures are
    approximate (SPEC §8: its end offset is the last batch's base offset + 1); the embedded
    broker is the one the launcher marks on the incarnation topic, and its entries say so.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    options = client_options or {}  # TLS/SASL: PlatformSettings.kafka_client_options()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **options)
    try:
        await probe.start()  # inside: a broker that does not answer still leaves nothing open
        topics = await probe.topics()
        partitions = [TopicPartition(t, p) for t in sorted(topics & set(CATALOGUE))
                      for p in sorted(probe.partitions_for_topic(t) or ())]
        ends = await probe.end_offsets(partitions) if partitions else {}
    finally:
        await probe.stop()
    embedded = any(tp.topic == INCARNATION_TOPIC and end > 0 for tp, end in ends.items())
    result: list[Lag] = []
    groups = groups or default_groups()
    bar = progress(len(groups)) if progress else None
    for group in groups:
        # A consumer that never subscribes reads the group's offsets without joining it.
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False,
                                  **options)
        await reader.start()
        try:
            per_topic: dict[str, dict[int, int]] = {}
            for tp in _partitions_of_group(group, partitions):
                committed = await reader.committed(tp)
                if committed is not None and committed >= 0:
                    per_topic.setdefault(tp.topic, {})[tp.partition] = partition_lag(ends[tp], committed)
        finally:
            await reader.stop()
        result += [Lag(group, topic, len(lags), sum(lags.values()), lags, embedded)
                   for topic, lags in sorted(per_topic.items())]
        if bar:
            bar.advance()
    return result
