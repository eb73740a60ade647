"""`parse` turns every kind of bad message into a `Rejected` reason that names the rule and
never the values (SPEC §4, R10; issue 9). The end-to-end version, on every consumed topic of
every service, is tests/integration/test_fuzz_events.py."""
from __future__ import annotations

import json
import uuid

import pytest

from shared.messaging.parsing import MAX_EVENT_BYTES, Incoming, parse
from shared.errors import Rejected
from shared.messaging.events import ContactUpserted, DataSource
from shared.messaging.topics import topic
from tests.helpers import envelope_for

EMAIL = "maija.vuotaja@example.fi"


def good() -> dict:
    payload = ContactUpserted(external_ref=f"crm-{uuid.uuid4()}", source=DataSource.b2b_register,
                              first_name="Maija", last_name="Vuotaja", emails=[EMAIL])
    return json.loads(envelope_for(payload)[2].model_dump_json())


def reason_for(value: bytes) -> str:
    with pytest.raises(Rejected) as caught:
        parse(topic("contact-upserted"), Incoming(value))
    return caught.value.reason


def test_a_good_event_parses():
    assert parse(topic("contact-upserted"), Incoming(json.dumps(good()).encode())).payload.emails == [EMAIL]


@pytest.mark.parametrize("value, rule", [
    (b"", "empty message"),
    (b"{not json", "invalid"),
    (json.dumps(good()).encode()[:120], "invalid"),
    (json.dumps({**good(), "type": "usage-recorded"}).encode(), "does not belong on topic"),
    (json.dumps({**good(), "schema_version": 9}).encode(), "schema_version"),
    (json.dumps({**good(), "data": "text"}).encode(), "data"),
    (json.dumps({**good(), "data": {**good()["data"], "emails": EMAIL}}).encode(), "emails"),
    (json.dumps({**good(), "data": {**good()["data"], "first_name": {"Maija": 1}}}).encode(), "first_name"),
])
def test_bad_messages_are_rejected_naming_the_rule_not_the_value(value, rule):
    reason = reason_for(value)
    assert rule in reason
    assert EMAIL not in reason and "Vuotaja" not in reason


def test_an_oversized_event_is_rejected_by_its_size_even_when_otherwise_valid():
    event = good()
    event["data"]["title"] = None
    event["correlation_id"] = "c"
    event["data"]["emails"] = [f"a{i}@example.fi" for i in range(MAX_EVENT_BYTES // 14)]
    value = json.dumps(event).encode()
    assert len(value) > MAX_EVENT_BYTES
    assert reason_for(value).startswith("message too large")
