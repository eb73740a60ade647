"""AsyncAPI 3.0 documents generated from the topic catalogue (SPEC §7 `/asyncapi.json`).

One document per service (the topics it publishes and consumes) or for the whole
register (`rekisteri asyncapi`), each message with the envelope and its payload schema.
"""
from __future__ import annotations

from typing import Any

from shared.messaging.envelope import Envelope
from shared.messaging.topics import CATALOGUE, EXTERNAL, Topic


def _message_schema(spec: Topic) -> dict[str, Any]:
    envelope = Envelope.model_json_schema()
    payload = spec.payload.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = payload.pop("$defs", {})
    envelope["properties"]["data"] = payload
    envelope["properties"]["type"] = {"const": spec.name, "type": "string"}
    envelope["properties"]["schema_version"] = {"const": spec.schema_version, "type": "integer"}
    return {"schema": envelope, "defs": defs}


def build_asyncapi(service: str | None = None, *, version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI document of one service, or of the whole register when `service` is None."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for spec in CATALOGUE.values():
        publishes = service is None or service in spec.producers
        consumes = service is not None and service in spec.consumers
        if not (publishes or consumes):
            continue
        built = _message_schema(spec)
        schemas.update(built["defs"])
        message_name = spec.payload.__name__
        messages[message_name] = {
            "name": spec.name,
            "contentType": "application/json",
            "payload": built["schema"],
            "description": spec.description,
        }
        channels[spec.name] = {
            "address": spec.name,
            "description": spec.description,
            "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
            "bindings": {"kafka": {
                "partitions": spec.partitions,
                "topicConfiguration": {"retention.ms": spec.retention_ms},
            }},
            "x-key": spec.key,
            "x-personal-data": spec.personal_data,
            "x-producers": list(spec.producers),
            "x-consumers": list(spec.consumers),
            "x-dead-letter-topic": spec.dead_letter if spec.consumers and spec.consumers != (EXTERNAL,) else None,
        }
        if publishes:
            operations[f"publish-{spec.name}"] = {"action": "send", "channel": {"$ref": f"#/channels/{spec.name}"}}
        if consumes:
            operations[f"consume-{spec.name}"] = {"action": "receive", "channel": {"$ref": f"#/channels/{spec.name}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"Rekisteri {service}" if service else "Rekisteri",
            "version": version,
            "description": "Events of the customer register. Every message is one JSON envelope "
                           "(id, type, source, time, subject, schema_version, data, correlation_id); "
                           "the key is the entity whose order matters.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
