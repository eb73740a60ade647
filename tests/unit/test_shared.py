"""Pure parts of the shared platform: envelope, catalogue, parsing, tokens, log scrubbing."""
from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.messaging.asyncapi import build_asyncapi
from shared.web.auth import Role, mint_token, verify_token
from shared.messaging.parsing import Incoming, parse
from shared.errors import NotAuthenticated, Rejected
from shared.messaging.events import ContactErased, UsageRecorded
from shared.logging import redact_personal_data, scrub_text
from shared.messaging.outbox import build_envelope
from shared.messaging.topics import CATALOGUE, all_topic_names, topic

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def test_every_consumed_topic_has_a_dead_letter_topic():
    names = set(all_topic_names())
    for spec in CATALOGUE.values():
        if spec.consumers and spec.consumers != ("other company systems",):
            assert spec.dead_letter in names


def test_catalogue_keys_are_payload_fields():
    for spec in CATALOGUE.values():
        assert spec.key in spec.payload.model_fields, spec.name


def test_envelope_is_built_with_the_topics_key_and_type():
    person_id = uuid.uuid4()
    name, key, envelope = build_envelope(ContactErased(person_id=person_id), source="contacts", correlation_id="c-1")
    assert (name, key, envelope.type, envelope.subject) == ("contact-erased", str(person_id), "contact-erased", str(person_id))
    assert envelope.correlation_id == "c-1" and envelope.time.utcoffset().total_seconds() == 0
    parsed = parse(topic("contact-erased"), Incoming(envelope.to_bytes()))
    assert parsed.payload == ContactErased(person_id=person_id)


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.update(type="contact-erased"), "does not belong on topic"),
    (lambda e: e.update(schema_version=2), "unsupported schema_version"),
    (lambda e: e["data"].update(quantity="lots"), "invalid data: quantity"),
    (lambda e: e.pop("id"), "invalid envelope: id"),
    (lambda e: e.update(time="2026-01-01T00:00:00"), "invalid envelope: time"),  # naive time
])
def test_parse_rejects_with_a_reason_naming_the_field(mutate, reason):
    usage = UsageRecorded(customer_id=uuid.uuid4(), meter="vm-hours", quantity="1.5", time="2026-11-01T10:00:00Z")
    _, _, envelope = build_envelope(usage, source="platform")
    raw = json.loads(envelope.model_dump_json())
    mutate(raw)
    with pytest.raises(Rejected) as caught:
        parse(topic("usage-recorded"), Incoming(json.dumps(raw).encode()))
    assert reason in caught.value.reason
    assert "lots" not in caught.value.reason  # values are never echoed


def test_tokens_round_trip_and_reject_tampering_and_expiry():
    person = uuid.uuid4()
    token = mint_token(SECRET, user=f"person:{person}", role=Role.subject, person_id=person)
    principal = verify_token(SECRET, token)
    assert principal.role is Role.subject and principal.person_id == person
    with pytest.raises(NotAuthenticated):
        verify_token("another-secret-another-secret-another-secret", token)
    with pytest.raises(NotAuthenticated, match="expired"):
        verify_token(SECRET, mint_token(SECRET, user="x", role="register_user", ttl_s=-10))
    with pytest.raises(ValueError):
        mint_token(SECRET, user="x", role=Role.subject)  # a subject token must name its person


@given(st.emails())
def test_scrub_masks_any_email(email):
    assert email not in scrub_text(f"contact {email} today")


@pytest.mark.parametrize("phone", ["+358 40 123 4567", "040-1234567", "020 74 66 010", "+358401234567"])
def test_scrub_masks_phone_numbers_but_keeps_ids(phone):
    event_id = str(uuid.uuid4())
    out = scrub_text(f"called {phone} re {event_id}")
    assert phone not in out and event_id in out


def test_redaction_drops_personal_keys_at_any_depth():
    out = redact_personal_data(None, "info", {"event": "x", "email": "a@b.fi", "data": {"name": "Matti", "n": 1}})
    assert out["email"] == "[redacted]" and out["data"] == {"name": "[redacted]", "n": 1}


def test_asyncapi_of_a_service_lists_what_it_publishes_and_consumes():
    document = build_asyncapi("billing")
    operations = document["operations"]
    assert "billing-receives-usage-recorded" in operations and "billing-sends-invoice-issued" in operations
    assert "billing-dead-letters-usage-recorded" in operations
    assert not any(name.endswith("-relationship-ended") for name in operations)
    usage = document["components"]["messages"]["UsageRecorded"]["payload"]
    assert "quantity" in usage["properties"]["data"]["properties"]
