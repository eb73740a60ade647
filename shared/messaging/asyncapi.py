"""AsyncAPI 3 documents generated from the topic catalogue (SPEC §7 `/asyncapi.json`, issue 17).

One document per service (the topics it publishes, consumes and dead-letters) or for the whole
register (`rekisteri asyncapi`, committed as docs/asyncapi.json). Everything in it comes from
the code that does it: the catalogue (keys, partitions, retention, producers, consumers, bulk
consumers' groups), the envelope and payload models, the relay's headers
(`shared/messaging/outbox.py`), the dead-letter headers (`InboxConsumer.dead_letter`), the
topic settings (`shared/messaging/kafka.py`) and the security settings (`shared/settings.py`).
The official parser validates it in tests/unit/test_asyncapi_parser.py.
"""
from __future__ import annotations

import re
from typing import Any

from shared.messaging.envelope import Envelope
from shared.messaging.examples import example_envelope
from shared.messaging.kafka import partitions_of, topic_configs
from shared.messaging.signing import SIGNED_TOPICS
from shared.messaging.topics import CATALOGUE, EXTERNAL, Topic, dead_letter_topic

ASYNCAPI_VERSION = "3.1.0"
KAFKA_BINDING = "0.5.0"
# `rekisteri topics create --replication N`: 3 in production (deploy/k8s/topics-job.yaml), 1 on one broker.
PRODUCTION_REPLICAS = 3
DEAD_LETTER_MESSAGE = "DeadLetter"
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _slug(name: str) -> str:
    return "external" if name == EXTERNAL else re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _consumed_by_services(spec: Topic) -> list[str]:
    return [c for c in spec.consumers if c != EXTERNAL]


# -- schemas ------------------------------------------------------------------------------
def _envelope_schema(spec: Topic) -> dict[str, Any]:
    """The envelope with this topic's `data`, type and version; signed topics require `signature`."""
    envelope = Envelope.model_json_schema()
    properties = envelope["properties"]
    payload = spec.payload.model_json_schema(ref_template="#/components/schemas/{model}")
    payload.pop("$defs", None)
    properties["data"] = payload
    properties["type"] = {"const": spec.name, "type": "string"}
    properties["schema_version"] = {"const": spec.schema_version, "type": "integer", "minimum": 1}
    envelope["required"] = [*envelope["required"], "schema_version"]
    if spec.name in SIGNED_TOPICS:
        properties["signature"] = {
            "type": "string", "maxLength": 200, "contentEncoding": "base64",
            "description": "Ed25519 signature by the `source` service over the envelope's canonical JSON "
                           "(sorted keys, compact, without `signature`); unsigned or badly signed commands "
                           "are dead-lettered (SPEC §9, shared/messaging/signing.py)."}
        envelope["required"].append("signature")
    else:
        del properties["signature"]  # never set off the command topics
    envelope["title"] = f"{spec.payload.__name__}Envelope"
    return envelope


def _defs(spec: Topic) -> dict[str, Any]:
    """The payload's nested models and enums, referenced from components/schemas."""
    defs: dict[str, Any] = spec.payload.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {})
    return defs


def _key_schema(spec: Topic) -> dict[str, Any]:
    field = spec.payload.model_json_schema()["properties"][spec.key]
    options = field.get("anyOf", [field])
    schema: dict[str, Any] = {"type": "string", "description": (
        f"The data's `{spec.key}`: the entity whose order matters (SPEC §4)"
        + ("; the envelope's `id` when the event has none." if spec.key not in spec.payload.model_json_schema().get(
            "required", []) else "."))}
    if all(o.get("format") == "uuid" for o in options if o.get("type") != "null"):
        schema["format"] = "uuid"
    return schema


def _headers(spec: Topic) -> dict[str, Any]:
    """What the relay puts on every message (outbox.py `_publish`); required where only the
    register's services publish (another system's producer sets its own)."""
    relayed = all(p != EXTERNAL and p != "launcher" for p in spec.producers)
    return {
        "type": "object",
        "properties": {
            "content-type": {"const": "application/json", "type": "string"},
            "correlation_id": {"type": "string", "description": "The envelope's `correlation_id` (its `id` "
                               "when it has none): the request that caused the event."},
            "traceparent": {"type": "string", "pattern": TRACEPARENT, "description": "W3C trace context of the "
                            "transaction that wrote the outbox row (issue 17); consumers continue its trace."},
            "tracestate": {"type": "string", "description": "W3C trace state, with `traceparent`."},
            "x-replayed-dead-letter": {"type": "string", "pattern": r"^[a-z_]+:[0-9]+$", "description": (
                "Set by `rekisteri dlq replay` on a dead letter published again: `<service>:<id>`.")},
        },
        "required": ["content-type", "correlation_id"] if relayed else [],
    }


def _dead_letter_headers() -> dict[str, Any]:
    """The headers `InboxConsumer.dead_letter` writes beside the sealed original (readable:
    no input value in any of them, issue 15)."""
    text = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "content-type": {"const": "application/json", "type": "string",
                             "description": "Set by the relay on every message; the body is a JSON object."},
            "correlation_id": {"type": "string", "description": "A fresh id (the original is in the body)."},
            "traceparent": _headers(CATALOGUE["contact-erased"])["properties"]["traceparent"],
            "x-dead-letter-reason": {**text, "maxLength": 1000, "description": (
                "Why: field paths and rules, never values (anything like an email or phone masked). Starts "
                "with `invalid envelope:`, `invalid event:`, `invalid data:`, `unsupported schema_version`, "
                "`message too large:`, `signature:`, `failed after N attempts:` or a consumer's own check "
                "(an unknown meter, a time in the future).")},
            "x-original-topic": {**text, "description": "The topic it was consumed from."},
            "x-consumer": {**text, "pattern": r"^[a-z0-9_]+\.[a-z0-9-]+$",
                           "description": "`<service>.<topic>`: which service's consumer rejected it."},
            "x-original-partition": {**text, "pattern": "^[0-9]*$", "description": "Empty for an HTTP batch."},
            "x-original-offset": {**text, "pattern": "^[0-9]*$", "description": "Empty for an HTTP batch."},
            "x-dead-letter-subject": {**text, "format": "uuid", "description": (
                "The dead letter's own data-key subject (also the message key and the body's `dead_letter`): "
                "names the row in the consuming service's `dead_letters` table.")},
            "x-original-truncated": {"const": "true", "type": "string", "description": (
                "The original was larger than 384 KiB: the sealed body holds its first 384 KiB; the whole is "
                "kept in the service's `dead_letters` table.")},
            "x-original-bytes": {**text, "pattern": "^[0-9]+$", "description": "The original's size, if truncated."},
        },
        "required": ["content-type", "correlation_id", "x-dead-letter-reason", "x-original-topic", "x-consumer",
                     "x-original-partition", "x-original-offset", "x-dead-letter-subject"],
    }


def _dead_letter_payload() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["dead_letter", "original"],
        "additionalProperties": False,
        "properties": {
            "dead_letter": {"type": "string", "format": "uuid", "description": (
                "The key-store subject the original is sealed for: a fresh id of the dead letter's own, no "
                "person's.")},
            "original": {"type": "string", "pattern": r"^rk1\.[0-9]+\.[A-Za-z0-9_-]+$", "description": (
                "The original bytes, base64-encoded, sealed (`rk1.<key id>.<base64url>`, AES-256-GCM) under "
                "the subject's data key. The key is destroyed when the dead letter's row is deleted (prune "
                "after DEAD_LETTER_RETENTION_DAYS, the erasure of a person it names, or by hand): from then on "
                "no copy opens (docs/PRIVACY.md).")},
        },
    }


# -- messages, channels, operations ---------------------------------------------------------
def _message(spec: Topic) -> dict[str, Any]:
    example = example_envelope(spec)
    headers = {"content-type": "application/json", "correlation_id": example["correlation_id"],
               "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    description = spec.description + (" A command: signed by its publisher (SPEC §9)."
                                       if spec.name in SIGNED_TOPICS else "")
    return {
        "name": spec.name,
        "title": spec.payload.__name__,
        "summary": spec.description,
        "description": description,
        "contentType": "application/json",
        "headers": _headers(spec),
        "payload": _envelope_schema(spec),
        "correlationId": {"location": "$message.header#/correlation_id"},
        "bindings": {"kafka": {"key": _key_schema(spec), "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": f"{spec.name}-example", "summary": f"A {spec.name} event as relayed.",
                      "headers": headers, "payload": example}],
    }


def _dead_letter_message() -> dict[str, Any]:
    subject = "6f1c2b3a-4e4f-4a8b-9c7d-8e9f0a1b2c3d"
    return {
        "name": "dead-letter",
        "title": DEAD_LETTER_MESSAGE,
        "summary": "A message a consumer could not apply, with its reason (SPEC §7 bad event).",
        "description": "The original bytes as consumed (JSON or not; truncated past 384 KiB), sealed under "
                       "the dead letter's own data key and keyed by its subject: another system may carry "
                       "personal data in plain, so nothing of the original travels readable (issue 15). The "
                       "record operators read and replay is the consuming service's `dead_letters` table "
                       "(`rekisteri dlq list`, `rekisteri dlq replay`); this topic is a copy for other "
                       "systems holding the key store, kept as long as its source topic, and unreadable once "
                       "the row is gone.",
        "contentType": "application/json",
        "headers": _dead_letter_headers(),
        "payload": _dead_letter_payload(),
        "bindings": {"kafka": {"key": {"type": "string", "format": "uuid",
                                       "description": "The dead letter's subject (never the original key)."},
                               "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": "dead-letter-example", "summary": "An opt-out with no purposes, rejected by consent.",
                      "headers": {"content-type": "application/json",
                                  "correlation_id": "0d9f1c2b3a4e4f5a8b6c7d8e9f0a1b2c",
                                  "x-dead-letter-reason": "invalid data: purposes: List should have at least 1 "
                                                          "item after validation, not 0",
                                  "x-original-topic": "optout-registered", "x-consumer": "consent.optout-registered",
                                  "x-original-partition": "2", "x-original-offset": "1041",
                                  "x-dead-letter-subject": subject},
                      "payload": {"dead_letter": subject,
                                  "original": "rk1.1.q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4"}}],
    }


def _channel(name: str, description: str, message: str, partitions: int, extra: dict[str, Any]) -> dict[str, Any]:
    # The binding's schema: retention.ms a number, cleanup.policy a list.
    config: dict[str, Any] = {k: int(v) if v.isdigit() else [v] for k, v in topic_configs(name).items()}
    return {
        "address": name,
        "title": name,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "bindings": {"kafka": {
            "topic": name, "partitions": partitions, "replicas": PRODUCTION_REPLICAS,
            "topicConfiguration": config,
            "bindingVersion": KAFKA_BINDING}},
        **extra,
    }


def _operation(action: str, channel: str, message: str, party: str, summary: str,
               group: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }
    if party != EXTERNAL and party != "launcher":
        binding: dict[str, Any] = {"clientId": {"type": "string", "enum": [f"rekisteri-{party}"]}}
        if group is not None:
            binding["groupId"] = {"type": "string", "enum": [group]}
        operation["bindings"] = {"kafka": {**binding, "bindingVersion": KAFKA_BINDING}}
    return operation


def _add_topic(document: dict[str, Any], spec: Topic, service: str | None) -> None:
    channels, operations = document["channels"], document["operations"]
    messages = document["components"]["messages"]
    message = spec.payload.__name__
    messages[message] = _message(spec)
    document["components"]["schemas"].update(_defs(spec))
    consuming = _consumed_by_services(spec)
    channels[spec.name] = _channel(spec.name, spec.description, message, spec.partitions, {
        "x-key": spec.key, "x-personal-data": spec.personal_data,
        # Issue 15: fields the register's own producers seal (see the info description).
        "x-sealed-fields": list(spec.sealed_fields),
        "x-seal-subject": list(spec.seal_subject) if spec.sealed_fields else [],
        "x-dead-letter-topic": spec.dead_letter if consuming else None})
    for producer in spec.producers:
        if service in (None, producer):
            operations[f"{_slug(producer)}-sends-{spec.name}"] = _operation(
                "send", spec.name, message, producer, f"{producer} publishes {spec.name}"
                + (" through its outbox relay." if producer not in (EXTERNAL, "launcher") else "."))
    for consumer in spec.consumers:
        if service in (None, consumer):
            group = spec.consumer_group(consumer) if consumer != EXTERNAL else None
            operations[f"{_slug(consumer)}-receives-{spec.name}"] = _operation(
                "receive", spec.name, message, consumer, f"{consumer} applies {spec.name}"
                + (f" in group {group}." if group else "."), group)
    dead_letterers = [c for c in consuming if service in (None, c)]
    if dead_letterers:
        name = dead_letter_topic(spec.name)
        messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
        channels[name] = _channel(name, f"Messages of {spec.name} a consumer rejected, with the reason.",
                                  DEAD_LETTER_MESSAGE, partitions_of(name), {"x-dead-letter-of": spec.name})
        for consumer in dead_letterers:
            operations[f"{_slug(consumer)}-dead-letters-{spec.name}"] = _operation(
                "send", name, DEAD_LETTER_MESSAGE, consumer,
                f"{consumer} dead-letters what it cannot apply of {spec.name}.")


def _servers() -> dict[str, Any]:
    return {
        "embedded": {"host": "localhost:9092", "protocol": "kafka", "title": "Embedded stack",
                     "description": "`rekisteri up` / `make run`: Tansu, memory-only, one broker, PLAINTEXT, "
                                    "topics with one replica (no idempotent producer, no transactions)."},
        "compose": {"host": "kafka:9092", "protocol": "kafka", "protocolVersion": "3.8.0", "title": "Compose",
                    "description": "docker-compose.yml: Apache Kafka 3.8 (KRaft, one broker, one replica per "
                                   "topic), PLAINTEXT inside the compose network; localhost:9094 from the host."},
        "production": {"host": "kafka-bootstrap.kafka.svc:9092", "protocol": "kafka", "title": "Production",
                       "description": "deploy/k8s: the cluster's brokers, topics with 3 replicas. "
                                      "KAFKA_SECURITY_PROTOCOL chooses TLS and SASL (docs/OPERATIONS.md).",
                       "security": [{"$ref": f"#/components/securitySchemes/{name}"} for name in _SECURITY]},
    }


_SECURITY = {
    "saslScram": {"type": "scramSha512", "description": "KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) "
                  "with KAFKA_SASL_MECHANISM=SCRAM-SHA-512 (the default): one user per service."},
    "saslPlain": {"type": "plain", "description": "KAFKA_SASL_MECHANISM=PLAIN, only over SASL_SSL."},
    "mutualTls": {"type": "X509", "description": "KAFKA_SECURITY_PROTOCOL=SSL with KAFKA_SSL_CERTFILE and "
                  "KAFKA_SSL_KEYFILE (KAFKA_SSL_CAFILE for the brokers' CA)."},
}


def build_asyncapi(service: str | None = None, *, version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI document of one service, or of the whole register when `service` is None."""
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"Rekisteri {service}" if service else "Rekisteri",
            "version": version,
            "description": "Events of the customer register. Every message is one JSON envelope "
                           "(id, type, source, time, subject, schema_version, data, correlation_id; signature "
                           "on command topics); the key is the entity whose order matters. Consumers "
                           "deduplicate by (source, id) and dead-letter what they cannot apply to "
                           "`<topic>-dlq` with the reason in a header. Replicas: 3 in production, 1 on "
                           "the embedded and compose stacks. Crypto-shredding (docs/PRIVACY.md): "
                           "each field a channel lists in x-sealed-fields is, as the register publishes it, "
                           "one string 'rk1.<key id>.<base64url(nonce | ciphertext)>': the field's JSON value "
                           "sealed with AES-256-GCM under the data key of the subject (the first of "
                           "x-seal-subject set in data, else the envelope id), with "
                           "'rekisteri/field/v1|<subject>|<key id>' as associated data. Consumers open it "
                           "with the register's key store; once the subject is erased its key is destroyed "
                           "and the value never opens again (treat the event as erased). Producers outside "
                           "the register may send these fields in plain: the register's consumers accept "
                           "both forms.",
        },
        "servers": _servers(),
        "defaultContentType": "application/json",
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}, "securitySchemes": dict(_SECURITY)},
    }
    for spec in CATALOGUE.values():
        if service is None or service in spec.producers or service in spec.consumers:
            _add_topic(document, spec, service)
    return document
