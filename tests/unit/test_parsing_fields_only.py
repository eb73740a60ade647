"""A fields-only topic's events (issue 21: billing ingestion's CPU per event) are validated to
the envelope's fields instead of the envelope model: the same envelope, payload, dedupe key and
dead-letter reasons as the model path (SPEC §4), the model made only when asked for."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.errors import Rejected
from shared.messaging.events import UsageRecorded
from shared.messaging.outbox import build_envelope
from shared.messaging.parsing import FIELDS_ONLY_TOPICS, Incoming, _typed_envelope, parse
from shared.messaging.signing import SIGNED_TOPICS
from shared.messaging.topics import topic

SPEC = topic("usage-recorded")


def usage_envelope(**changes: object) -> dict:
    payload = UsageRecorded(customer_id=uuid.uuid4(), meter="api_calls", quantity=Decimal("1.50"),
                            time=datetime(2025, 3, 1, tzinfo=UTC), dimensions={"region": "fi"})
    _topic, _key, envelope = build_envelope(payload, source="cloud-platform")
    return {**envelope.to_json_dict(), **changes}


def model_path(raw: bytes):
    """What `parse` made of a usage event before the fields-only path."""
    return _typed_envelope(UsageRecorded).model_validate_json(raw)


def test_usage_recorded_is_fields_only_and_no_fields_only_topic_is_signed():
    assert "usage-recorded" in FIELDS_ONLY_TOPICS
    assert not FIELDS_ONLY_TOPICS & SIGNED_TOPICS  # signatures are verified on the model


@pytest.mark.parametrize("changes, dropped", [
    ({}, ()),
    ({"time": "2025-03-01T14:00:00+02:00", "correlation_id": "c-1"}, ()),  # the envelope's time is kept in UTC
    ({}, ("schema_version",)),  # absent: the model's default
])
def test_a_fields_only_event_parses_to_the_envelope_and_payload_of_the_model_path(changes, dropped):
    raw = json.dumps({k: v for k, v in usage_envelope(**changes).items() if k not in dropped}).encode()
    parsed = parse(SPEC, Incoming(raw))
    expected = model_path(raw)
    assert parsed.payload == expected.data
    assert parsed.inbox_key == (expected.source, expected.id)
    assert parsed.envelope == expected
    assert parsed.envelope.time.utcoffset() == timedelta(0)


def test_the_envelope_model_is_made_only_when_asked_for():
    parsed = parse(SPEC, Incoming(json.dumps(usage_envelope()).encode()))
    assert parsed._envelope is None  # the batch needs payload and dedupe key only
    assert parsed.envelope.type == "usage-recorded"


@pytest.mark.parametrize("changes, reason", [
    ({"subject": ""}, "invalid envelope: subject: String should have at least 1 character"),
    ({"schema_version": 2}, "unsupported schema_version 2 (topic usage-recorded has 1)"),
    ({"type": "contact-erased"}, "does not belong on topic usage-recorded"),
    ({"extra": 1}, "invalid envelope: extra: Extra inputs are not permitted"),
    ({"time": "2025-03-01T12:00:00"}, "invalid envelope: time: Input should have timezone info"),
    ({"correlation_id": "x" * 201}, "invalid envelope: correlation_id: String should have at most 200 characters"),
    ({"data": {"meter": "api_calls"}}, "invalid data: customer_id: Field required"),
])
def test_a_bad_fields_only_event_is_rejected_with_the_model_paths_reason(changes, reason):
    with pytest.raises(Rejected) as rejected:
        parse(SPEC, Incoming(json.dumps(usage_envelope(**changes)).encode()))
    assert reason in rejected.value.reason


def test_a_non_utc_envelope_time_is_converted_as_the_model_converts_it():
    raw = json.dumps(usage_envelope(time="2025-03-01T14:00:00+02:00")).encode()
    assert parse(SPEC, Incoming(raw)).envelope.time == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert model_path(raw).time == datetime(2025, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))
