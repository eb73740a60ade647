"""Kafka plumbing: the FastStream broker factory and topic administration.

Producers use acks=all; idempotence is a setting because the embedded broker (Tansu)
rejects InitProducerId, while Apache Kafka should have it on (SPEC §8).
"""
from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

from shared.settings import PlatformSettings
from shared.messaging.topics import CATALOGUE, all_topic_names, dead_letter_topic


def broker_security(settings: PlatformSettings) -> BaseSecurity | None:
    """FastStream's form of the TLS/SASL settings (`PlatformSettings.kafka_client_options`)."""
    options = settings.kafka_client_options()
    protocol, context = options["security_protocol"], options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kind = SASLPlaintext if options["sasl_mechanism"] == "PLAIN" else SASLScram512
    return kind(username=options["sasl_plain_username"], password=options["sasl_plain_password"],
                ssl_context=context, use_ssl=protocol == "SASL_SSL")


def create_broker(settings: PlatformSettings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=client_id,
        acks=settings.kafka_acks,
        enable_idempotence=settings.kafka_enable_idempotence,
        # Topics are created from the catalogue; auto-creation would pick wrong partitions.
        allow_auto_create_topics=False,
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        linger_ms=1,
        request_timeout_ms=30000,
        graceful_timeout=15,  # on stop, finish the message in hand before leaving
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )


def topic_configs(name: str) -> dict[str, str]:
    """A topic's broker config: its catalogue retention, and a dead-letter topic its source's
    (issue 15, SPEC §9): a dead letter's copy on the bus is gone when the original is. Replay
    reads PostgreSQL (`dead_letters`, pruned after DEAD_LETTER_RETENTION_DAYS), not the topic.
    Apache Kafka deletes past `retention.ms`; the embedded broker (Tansu, memory only) takes
    the setting and frees nothing until it restarts (docs/OPERATIONS.md)."""
    spec = CATALOGUE.get(name) or CATALOGUE.get(source_of_dead_letter_topic(name) or "")
    if spec is None:
        raise KeyError(f"topic {name!r} is neither in the catalogue nor a dead-letter topic of one")
    return {"retention.ms": str(spec.retention_ms), "cleanup.policy": "delete"}


def source_of_dead_letter_topic(name: str) -> str | None:
    """`contact-registered-dlq` → `contact-registered`; None for a topic that is not one."""
    suffix = dead_letter_topic("")
    return name[: -len(suffix)] if name.endswith(suffix) else None


def partitions_of(name: str) -> int:
    spec = CATALOGUE.get(name)
    return spec.partitions if spec else 1


async def ensure_topics(bootstrap_servers: str, names: list[str] | None = None, replication: int = 1,
                        client_options: dict[str, Any] | None = None) -> list[str]:
    """Create the catalogue's topics (and dead-letter topics) that do not exist yet.
    `client_options`: TLS/SASL (`PlatformSettings.kafka_client_options()`)."""
    wanted = names or all_topic_names()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000, **(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        created: list[str] = []
        for name in missing:
            try:
                await admin.create_topics(
                    [NewTopic(name, partitions_of(name), replication, topic_configs=topic_configs(name))]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def describe_topics(bootstrap_servers: str, client_options: dict[str, Any] | None = None) -> dict[str, int]:
    """Topic name → partition count, for the catalogue's topics that exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000, **(client_options or {}))
    await admin.start()
    try:
        names = [n for n in all_topic_names() if n in set(await admin.list_topics())]
        described = await admin.describe_topics(names) if names else []
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


__all__ = ["create_broker", "ensure_topics", "describe_topics", "dead_letter_topic"]


async def publish_incarnation(bootstrap_servers: str, *, previous_drained: bool = False) -> str:
    """Mark a newly started memory-only broker; services replay their outbox on a change."""
    import uuid

    from aiokafka import AIOKafkaProducer

    from shared.messaging.envelope import utcnow
    from shared.messaging.events import BrokerIncarnation
    from shared.messaging.outbox import build_envelope

    incarnation = uuid.uuid4()
    payload = BrokerIncarnation(incarnation=incarnation, started_at=utcnow(), previous_drained=previous_drained)
    topic, key, envelope = build_envelope(payload, source="launcher")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, envelope.to_bytes(), key=key.encode())
    finally:
        await producer.stop()
    return str(incarnation)



async def list_groups(bootstrap_servers: str, client_options: dict[str, Any] | None = None) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000, **(client_options or {}))
    await admin.start()
    try:
        return [group for group, _ in await admin.list_consumer_groups()]
    finally:
        await admin.close()
