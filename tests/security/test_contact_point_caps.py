"""Finding 2 (issue 16; SPEC §7, §9): one request must not freeze a service. consent ran its
email pattern before any length check, so `"a@" + "." * 32000 + "@"` took 24 s of event-loop
time and a 1 MiB value hours. Every personal-value field is now capped before any pattern
(email 254, phone 32, name 200, lists capped) in the HTTP models and the event schemas alike:
the value is refused by its length, unread, with the field and the rule named, never the value.
The kernel's own caps are unit-tested in tests/unit/test_privacy_contact_points.py."""
from __future__ import annotations

import json
import uuid

import pytest

from shared.messaging.events import Channel, ContactRegistered, DataSource, OptoutRegistered, Purpose
from shared.privacy import contact_points
from tests.helpers import ExternalSystem, envelope_for, eventually
from tests.security.conftest import OWNER, USER

PATHOLOGICAL = "a@" + "." * 32000 + "@"  # 24 s under the old pattern
MEBIBYTE = "a" * (1 << 20) + "@example.fi"


@pytest.fixture
def no_pattern_runs(monkeypatch):
    """Fails the test if the kernel's only pattern reads a value: over-long ones must not reach it."""
    class NeverSearched:
        def search(self, _value: str) -> None:
            raise AssertionError("a pattern ran on an over-long value")

    monkeypatch.setattr(contact_points, "_WHITESPACE", NeverSearched())


async def test_consents_check_refuses_the_pathological_email_by_its_length(consent, no_pattern_runs):
    body = {"purpose": "direct_advertising", "channel": "email", "email": PATHOLOGICAL}
    resp = await consent.http.post("/checks", headers=USER, json=body)
    assert resp.status_code == 422
    error = resp.json()
    assert "email" in error["fields"] and "254" in json.dumps(error)
    assert "....." not in resp.text  # the value is never echoed


async def test_a_mebibyte_email_gets_a_4xx_before_any_parsing_at_consent_and_contacts(consent, contacts,
                                                                                      no_pattern_runs):
    """At 1 MiB the body limit answers 413 unread; under it, the field cap answers 422."""
    check = {"purpose": "direct_advertising", "channel": "email", "email": MEBIBYTE}
    assert (await consent.http.post("/checks", headers=USER, json=check)).status_code == 413
    person = {"first_name": "Aino", "last_name": "Pitkä", "emails": [MEBIBYTE[-300:]],
              "legal_basis": "assignment", "purposes": ["assignments"], "source": "person_web"}
    resp = await contacts.http.post("/persons", headers=OWNER, json=person)
    assert resp.status_code == 422 and any(k.startswith("emails") for k in resp.json()["fields"])
    long_name = {**person, "emails": ["aino@example.fi"], "first_name": "A" * 201}
    resp = await contacts.http.post("/persons", headers=OWNER, json=long_name)
    assert resp.status_code == 422 and "first_name" in resp.json()["fields"]


async def test_list_lengths_are_capped_in_the_http_models(consent):
    ban = {"purposes": ["direct_advertising"], "channels": ["email"], "method": "web_form",
           "emails": [f"p{i}@example.fi" for i in range(101)]}
    resp = await consent.http.post("/optouts", headers=OWNER, json=ban)
    assert resp.status_code == 422 and "emails" in resp.json()["fields"]


def test_the_event_schemas_cap_each_contact_point_and_their_number():
    """The same caps on the bus: an over-long value or list is a schema error (dead-lettered)."""
    from pydantic import ValidationError
    ok = dict(person_id=uuid.uuid4(), source=DataSource.person_web, lifecycle_state="prospect")
    for too_much in ({"emails": ["a" * 250 + "@x.fi"]}, {"phones": ["1" * 33]},
                     {"emails": [f"p{i}@example.fi" for i in range(101)]}):
        with pytest.raises(ValidationError):
            ContactRegistered(**ok, **too_much)


async def test_an_event_with_a_900_kib_email_is_dead_lettered_and_the_consumer_goes_on(infra, consent):
    """On the real broker: the poison names the field, not the value; the next ban applies."""
    good_person = uuid.uuid4()
    _topic, key, poison = envelope_for(OptoutRegistered(
        person_id=uuid.uuid4(), emails=["x@example.fi"], purposes=[Purpose.direct_advertising],
        channels=[Channel.email], source="web-form"))
    raw = json.loads(poison.to_bytes())
    raw["data"]["emails"] = ["a" * (900 << 10) + "@example.fi"]  # under the producer's 1 MiB request cap
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish_raw("optout-registered", json.dumps(raw).encode(), key=key.encode())
        await crm.publish(OptoutRegistered(person_id=good_person, purposes=[Purpose.direct_advertising],
                                           channels=[Channel.email], source="web-form"))

    async def banned() -> bool:
        return bool(await consent.runtime.pool.fetchval(
            "SELECT true FROM consent_state WHERE person_id = $1 AND status = 'banned'", good_person))

    await eventually(banned)
    reason = await eventually(lambda: consent.runtime.pool.fetchval(
        "SELECT reason FROM dead_letters WHERE topic = 'optout-registered' AND key = $1", key.encode()))
    assert "emails" in reason and "aaaa" not in reason
