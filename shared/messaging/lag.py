"""Consumer lag per group and topic, from committed and end offsets (approximate on the
embedded broker, SPEC §8). Read by the service runtime for its metric and by the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from shared.messaging.topics import CATALOGUE
from shared.settings import SERVICE_NAMES

INCARNATION_TOPIC = "rekisteri-broker-incarnation"


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partitions: int
    lag: int  # end offset − committed offset, summed over the group's partitions of the topic


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
    approximate (SPEC §8: its end offset is the last batch's base offset + 1).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    options = client_options or {}  # TLS/SASL: PlatformSettings.kafka_client_options()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **options)
    await probe.start()
    try:
        topics = await probe.topics()
        partitions = [TopicPartition(t, p) for t in sorted(topics & set(CATALOGUE))
                      for p in sorted(probe.partitions_for_topic(t) or ())]
        ends = await probe.end_offsets(partitions) if partitions else {}
    finally:
        await probe.stop()
    result: list[Lag] = []
    groups = groups or default_groups()
    bar = progress(len(groups)) if progress else None
    for group in groups:
        # A consumer that never subscribes reads the group's offsets without joining it.
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False,
                                  **options)
        await reader.start()
        try:
            per_topic: dict[str, list[int]] = {}
            for tp in _partitions_of_group(group, partitions):
                committed = await reader.committed(tp)
                if committed is not None and committed >= 0:
                    per_topic.setdefault(tp.topic, []).append(ends[tp] - committed)
        finally:
            await reader.stop()
        result += [Lag(group, topic, len(lags), sum(lags)) for topic, lags in sorted(per_topic.items())]
        if bar:
            bar.advance()
    return result
