"""Processors (GDPR Art. 28/30, notice §4 "alihankkijat") on the real database: the register
owner adds, changes and removes them; the y-tunnus check digit is verified (422 naming
business_id); they appear in every access report as recipients (Art. 15(1)(c))."""
from __future__ import annotations

import uuid

import pytest

from services.contacts.domain import business_id_check_digit
from tests.integration.test_rights_deadlines import OWNER, USER, access_request, contacts, new_person  # noqa: F401


def business_id() -> str:
    """A fresh valid y-tunnus (seven digits and their check digit)."""
    while True:
        digits = f"{uuid.uuid4().int % 10 ** 7:07d}"
        check = business_id_check_digit(digits)
        if check is not None:
            return f"{digits}-{check}"


def processor(**overrides) -> dict:
    return {"name": f"Pilvi Oy {uuid.uuid4().hex[:4]}", "business_id": business_id(), "service": "hosting",
            "purposes": ["customer_relationship", "usage_billing"], "location": "fi",
            "agreement_date": "2025-06-01", **overrides}


async def test_owner_adds_changes_and_removes_a_processor(contacts):
    resp = await contacts.http.post("/processors", headers=OWNER, json=processor())
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["location"] == "FI" and not created["outside_eea"]
    listed = (await contacts.http.get("/processors", headers=OWNER)).json()["processors"]
    assert created["id"] in [p["id"] for p in listed]
    changed = await contacts.http.put(f"/processors/{created['id']}", headers=OWNER,
                                      json=processor(business_id=created["business_id"], location="US"))
    assert changed.status_code == 200 and changed.json()["outside_eea"]
    assert (await contacts.http.delete(f"/processors/{created['id']}", headers=OWNER)).status_code == 204
    assert (await contacts.http.delete(f"/processors/{created['id']}", headers=OWNER)).status_code == 404


@pytest.mark.parametrize("bad, field", [
    ({"business_id": "1234567-8"}, "business_id"), ({"purposes": []}, "purposes"), ({"purposes": ["spam"]}, "purposes"),
    ({"location": "Finland"}, "location"), ({"agreement_date": "2999-01-01"}, "agreement_date"), ({"name": ""}, "name")])
async def test_invalid_processor_is_422_naming_the_field(contacts, bad, field):
    before = await contacts.runtime.pool.fetchval("SELECT count(*) FROM processors")
    resp = await contacts.http.post("/processors", headers=OWNER, json=processor(**bad))
    assert resp.status_code == 422, resp.text
    assert any(field in k for k in resp.json()["fields"]), resp.json()
    assert await contacts.runtime.pool.fetchval("SELECT count(*) FROM processors") == before


async def test_processors_are_for_the_register_owner_only(contacts):
    assert (await contacts.http.get("/processors", headers=USER)).status_code == 403
    assert (await contacts.http.post("/processors", headers=USER, json=processor())).status_code == 403


async def test_a_processor_appears_in_the_access_report_slice(contacts):
    created = (await contacts.http.post("/processors", headers=OWNER, json=processor())).json()
    rid = await access_request(contacts, await new_person(contacts))
    items = await contacts.runtime.pool.fetchval(
        "SELECT items FROM access_report_parts WHERE request_id = $1 AND service = 'contacts'", uuid.UUID(rid))
    mine = [i for i in items if i["category"] == "processor" and i["field"] == created["name"]]
    assert mine and mine[0]["value"]["business_id"] == created["business_id"]
    assert mine[0]["purpose"] == "customer_relationship,usage_billing"
    await contacts.http.delete(f"/processors/{created['id']}", headers=OWNER)
