"""The AsyncAPI documents are complete and true (issue 17, SPEC §4 and §7 `/asyncapi.json`).

Every example validates against its message's payload and headers schemas (jsonschema), and
is an event the consumers' own parser accepts; every consumer has a `receive` operation in
the group it really joins; dead-letter channels carry the headers `InboxConsumer.dead_letter`
writes; the envelope requires `schema_version`, and `signature` on the command topics.
"""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from shared.messaging.asyncapi import DEAD_LETTER_MESSAGE, build_asyncapi
from shared.messaging.examples import missing_examples
from shared.messaging.parsing import Incoming, parse
from shared.messaging.signing import SIGNED_TOPICS
from shared.messaging.topics import CATALOGUE, EXTERNAL, dead_letter_topic

SERVICES = ("contacts", "consent", "retention", "billing")
DOCUMENTS = [None, *SERVICES]
BASE = "urn:rekisteri:asyncapi"


def _validator(document: dict, pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer`, resolving `#/components/...` in the document."""
    registry = Registry().with_resource(BASE, DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=registry, format_checker=FormatChecker())


def _errors(document: dict, pointer: str, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(document, pointer).iter_errors(instance)]


def test_every_topic_has_an_example():
    assert missing_examples() == []


@pytest.mark.parametrize("service", DOCUMENTS)
def test_every_example_validates_against_its_payload_and_headers_schemas(service):
    document = build_asyncapi(service)
    messages = document["components"]["messages"]
    assert messages
    for name, message in messages.items():
        assert message["examples"], name
        for example in message["examples"]:
            assert _errors(document, f"/components/messages/{name}/payload", example["payload"]) == [], name
            assert _errors(document, f"/components/messages/{name}/headers", example["headers"]) == [], name


def test_the_schemas_reject_what_the_consumers_reject():
    """A schema that accepted anything would make the example test above pass for nothing."""
    document = build_asyncapi()
    good = document["components"]["messages"]["ContactErased"]["examples"][0]["payload"]
    assert _errors(document, "/components/messages/ContactErased/payload", {**good, "type": "contact-updated"})
    without_version = {k: v for k, v in good.items() if k != "schema_version"}
    assert _errors(document, "/components/messages/ContactErased/payload", without_version)
    assert _errors(document, "/components/messages/ContactErased/payload", {**good, "signature": "c2ln"})
    assert _errors(document, "/components/messages/ContactErased/payload", {**good, "data": {"person_id": "x"}})


@pytest.mark.parametrize("name", sorted(set(CATALOGUE) - SIGNED_TOPICS))
def test_each_unsigned_example_is_an_event_the_consumers_parser_accepts(name):
    message = build_asyncapi()["components"]["messages"][CATALOGUE[name].payload.__name__]
    raw = json.dumps(message["examples"][0]["payload"]).encode()
    assert parse(CATALOGUE[name], Incoming(raw)).envelope.type == name


def test_envelopes_require_schema_version_and_commands_require_their_signature():
    messages = build_asyncapi()["components"]["messages"]
    for name, spec in CATALOGUE.items():
        payload = messages[spec.payload.__name__]["payload"]
        assert "schema_version" in payload["required"], name
        assert ("signature" in payload["required"]) is (name in SIGNED_TOPICS), name
        assert ("signature" in payload["properties"]) is (name in SIGNED_TOPICS), name


def test_every_consumer_has_a_receive_operation_in_the_group_it_joins():
    """Group ids as ServiceRuntime makes them: `<service>` for per-event topics, `<service>.<topic>` for bulk."""
    operations = build_asyncapi()["operations"]
    assert not any("x-consumers" in channel for channel in build_asyncapi()["channels"].values())
    for name, spec in CATALOGUE.items():
        for consumer in spec.consumers:
            slug = "external" if consumer == EXTERNAL else consumer
            operation = operations[f"{slug}-receives-{name}"]
            assert operation["action"] == "receive" and operation["channel"] == {"$ref": f"#/channels/{name}"}
            if consumer != EXTERNAL:
                expected = f"{consumer}.{name}" if consumer in spec.bulk_consumers else consumer
                assert operation["bindings"]["kafka"]["groupId"]["enum"] == [expected]
        for producer in spec.producers:
            assert operations[f"{'external' if producer == EXTERNAL else producer}-sends-{name}"]["action"] == "send"
    assert operations["billing-receives-usage-recorded"]["bindings"]["kafka"]["groupId"]["enum"] == [
        "billing.usage-recorded"]
    assert operations["consent-receives-contact-erased"]["bindings"]["kafka"]["groupId"]["enum"] == ["consent"]


def test_channels_carry_kafka_bindings_and_servers_their_protocol_and_security():
    document = build_asyncapi()
    for name, spec in CATALOGUE.items():
        binding = document["channels"][name]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions and binding["bindingVersion"]
        assert binding["topicConfiguration"]["retention.ms"] == spec.retention_ms
        key = document["components"]["messages"][spec.payload.__name__]["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
    servers = document["servers"]
    assert set(servers) == {"embedded", "compose", "production"}
    assert {s["protocol"] for s in servers.values()} == {"kafka"}
    schemes = {ref["$ref"].rsplit("/", 1)[-1] for ref in servers["production"]["security"]}
    assert {document["components"]["securitySchemes"][s]["type"] for s in schemes} == {"scramSha512", "plain", "X509"}


def test_dead_letter_channels_name_the_reason_headers_the_consumer_writes():
    document = build_asyncapi()
    consumed = [n for n, s in CATALOGUE.items() if any(c != EXTERNAL for c in s.consumers)]
    for name in consumed:
        channel = document["channels"][dead_letter_topic(name)]
        assert channel["messages"] == {DEAD_LETTER_MESSAGE: {"$ref": f"#/components/messages/{DEAD_LETTER_MESSAGE}"}}
    headers = document["components"]["messages"][DEAD_LETTER_MESSAGE]["headers"]
    assert {"x-dead-letter-reason", "x-original-topic", "x-consumer", "x-original-partition",
            "x-original-offset"} <= set(headers["required"])
    assert "x-dead-letter-subject" in headers["required"]  # names the row; the body is sealed (issue 15, H1)
    assert {"x-original-truncated", "x-original-bytes"} <= set(headers["properties"])
    assert "x-original-sha256" not in headers["properties"]  # an unkeyed digest of the bytes: gone
    assert dead_letter_topic("invoice-issued") not in document["channels"]  # consumed by other systems only


@pytest.mark.parametrize("name", sorted(SIGNED_TOPICS))
def test_each_command_example_carries_a_signature_that_verifies(name):
    """Signed with the published example key over the canonical JSON, as signing.py signs (SPEC §9)."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.messaging.examples import EXAMPLE_SIGNING_SEED
    from shared.messaging.signing import canonical

    message = build_asyncapi()["components"]["messages"][CATALOGUE[name].payload.__name__]
    body = message["examples"][0]["payload"]
    public = Ed25519PrivateKey.from_private_bytes(EXAMPLE_SIGNING_SEED).public_key()
    public.verify(base64.b64decode(body["signature"]), canonical(body))  # raises if it does not verify
