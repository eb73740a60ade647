"""No personal data in logs, metrics, error bodies or dead-letter reasons (R10, issue 9).

A seeded person (name, email, phone, username, password) goes through all four services:
registered by staff, imported from a B2B register, searched, logged into, updated, banned by
contact point, checked for a campaign, asked about in an access request, and sent in broken
events and invalid requests. Every log line (all services, DEBUG), every service's `/metrics`
text, every 4xx body and every dead-letter reason is then scanned for the seeded values.
"""
from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.messaging import events as ev
from shared.logging import configure_logging, get_logger
from shared.settings import SERVICE_NAMES
from tests.helpers import ExternalSystem, auth, envelope_for, eventually, open_account
from tests.integration.test_fuzz_isolated import isolated  # noqa: F401 - fixture

FIRST, LAST = "Seppo", "Salaisuusvaara"
EMAIL = "seppo.salaisuusvaara@vuoto-testi.fi"
PHONE_TYPED, PHONE_E164 = "040 765 9876", "+358407659876"
USERNAME, PASSWORD = "seppo.salaisuus", "Hyvin-salainen-1234"
SEEDED = [FIRST, LAST, EMAIL, EMAIL.split("@")[0], PHONE_TYPED, PHONE_E164, PHONE_E164[1:], USERNAME, PASSWORD,
          "salaisuusvaara"]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [value for value in SEEDED if value.lower() in lowered]


async def run_scenario(isolated) -> list[str]:
    """Drive the seeded person through every service; returns the 4xx bodies it provoked."""
    contacts, consent = isolated.http["contacts"], isolated.http["consent"]
    billing = isolated.http["billing"]
    staff, owner = auth("register_user", user="staff-1"), auth("register_owner", user="owner-1")
    errors: list[str] = []

    async def expect(response, status: int) -> dict:
        assert response.status_code == status, response.text
        if response.status_code >= 400:
            errors.append(response.text)
        return response.json() if response.content else {}

    created = await expect(await contacts.post("/persons", headers=staff, json={
        "first_name": FIRST, "last_name": LAST, "emails": [EMAIL], "phones": [PHONE_TYPED],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"]}), 201)
    person_id = created["person"]["id"]
    await expect(await contacts.get("/persons", params={"email": EMAIL}, headers=staff), 200)
    await expect(await contacts.get("/persons", params={"name": LAST}, headers=staff), 200)
    await expect(await contacts.post("/persons", headers=staff, json={
        "first_name": FIRST, "last_name": LAST, "emails": [f"{EMAIL}@@"], "phones": [f"{PHONE_TYPED}x"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"]}), 422)
    await expect(await open_account(contacts, person_id, USERNAME, PASSWORD, staff), 200)
    await expect(await contacts.post("/auth/login", json={"username": USERNAME, "password": PASSWORD + "x"}), 401)
    await expect(await contacts.post("/auth/login", json={"username": USERNAME + "x", "password": PASSWORD}), 401)
    token = (await expect(await contacts.post("/auth/login", json={"username": USERNAME, "password": PASSWORD}),
                          200))["token"]
    me = {"Authorization": f"Bearer {token}"}
    await expect(await contacts.patch("/me", headers=me, json={"title": f"{LAST} Consulting"}), 200)
    await expect(await contacts.patch("/me", headers=me, json={"emails": [EMAIL.replace("@", " at ")]}), 422)
    await expect(await contacts.post("/access-requests", headers=owner, json={
        "emails": [EMAIL], "verification": "in_person", "verified_by": "desk-1"}), 201)
    await expect(await consent.post("/optouts", headers=staff, json={
        "emails": [EMAIL], "phones": [PHONE_TYPED], "purposes": ["direct_advertising"], "method": "phone"}), 201)
    await expect(await consent.post("/optouts", headers=staff, json={
        "emails": [EMAIL.replace("@", "")], "purposes": ["direct_advertising"], "method": "phone"}), 422)
    await expect(await consent.post("/checks", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "email", "email": EMAIL}), 200)
    await expect(await consent.post("/checks", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "sms", "phone": f"{PHONE_TYPED}{PHONE_TYPED}99"}), 422)
    await expect(await consent.post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "email", "emails": [EMAIL, f"x{EMAIL}"]}), 200)
    await expect(await billing.put("/billing/meters/leak_meter", headers=auth("billing"),
                                   json={"aggregation": "sum"}), 200)

    async with ExternalSystem(isolated.bootstrap) as crm:
        await crm.publish(ev.ContactUpserted(
            external_ref=f"leak-{uuid.uuid4()}", source=ev.DataSource.b2b_register, first_name=FIRST, last_name=LAST,
            emails=[EMAIL], phones=[PHONE_TYPED]))
        # Broken events whose values are personal: the dead-letter reasons must not echo them.
        _t, _k, good = envelope_for(ev.ContactUpserted(
            external_ref=f"leak-{uuid.uuid4()}", source=ev.DataSource.b2b_register, first_name=FIRST,
            last_name=LAST, emails=[EMAIL], phones=[PHONE_TYPED]))
        bad_phone = good.to_json_dict() | {"id": str(uuid.uuid4())}
        bad_phone["data"] = {**bad_phone["data"], "phones": [f"{PHONE_TYPED} / {EMAIL}"]}
        wrong_type = good.to_json_dict() | {"id": str(uuid.uuid4())}
        wrong_type["data"] = {**wrong_type["data"], "first_name": {FIRST: LAST}, "emails": EMAIL}
        for topic, value in (("contact-upserted", bad_phone), ("contact-upserted", wrong_type),
                             ("optout-registered", {**bad_phone, "type": "optout-registered"}),
                             ("contact-registered", {**wrong_type, "type": "contact-registered"})):
            await crm.publish_raw(topic, json.dumps(value).encode())
        await crm.publish_raw("contact-upserted", f'{{"note": "{FIRST} {LAST} <{EMAIL}> {PHONE_TYPED}"'.encode())
        await crm.publish(ev.UsageRecorded(customer_id=uuid.uuid4(), person_id=uuid.UUID(person_id), meter="leak_meter",
                                           quantity=Decimal("1"), time=datetime.now(UTC) - timedelta(minutes=1),
                                           dimensions={"user": EMAIL}))
    return errors


async def dead_letter_reasons(isolated) -> list[str]:
    reasons = []
    for name in SERVICE_NAMES:
        reasons += [r["reason"] for r in await isolated.runtime(name).pool.fetch("SELECT reason FROM dead_letters")]
    return reasons


async def test_seeded_personal_data_appears_in_no_log_metric_error_or_dead_letter(isolated):
    captured = io.StringIO()
    configure_logging("no-leaks", "DEBUG", stream=captured)
    try:
        errors = await run_scenario(isolated)
        pool = isolated.runtime("contacts").pool
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) >= 2 FROM persons WHERE last_name = $1", LAST), timeout=20)
        for service, expected in (("contacts", 3), ("consent", 2), ("retention", 2)):
            await eventually(lambda: isolated.runtime(service).pool.fetchval(  # noqa: B023 - awaited here
                "SELECT count(*) >= $2 FROM dead_letters WHERE position($1::bytea IN original) > 0",
                LAST.encode(), expected), timeout=20)  # noqa: B023 - awaited here
        get_logger("no-leaks").info("scenario_done")
    finally:
        configure_logging("tests", "INFO")
    logs = captured.getvalue()
    assert "scenario_done" in logs and "event_dead_lettered" in logs  # the capture really saw the services
    metrics = [(await isolated.http[name].get("/metrics")).text for name in SERVICE_NAMES]
    assert all("rekisteri_" in text for text in metrics)
    reasons = await dead_letter_reasons(isolated)
    assert len(reasons) >= 5
    found = {
        "logs": leaks(logs),
        "metrics": leaks("\n".join(metrics)),
        "error bodies": leaks("\n".join(errors)),
        "dead-letter reasons": leaks("\n".join(reasons)),
    }
    assert found == {"logs": [], "metrics": [], "error bodies": [], "dead-letter reasons": []}
