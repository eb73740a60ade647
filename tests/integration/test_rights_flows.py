"""Data-subject rights across contacts and consent on the real broker and database:
objection (R13) through either entry point reaches contacts' marketing export, and an approved
rectification (R14) reaches consent, which holds the contact points (as keyed hashes).
Retention and billing hold no contact points or names (ids only), so nothing there to correct."""
from __future__ import annotations

import uuid

import pytest

from shared.web.auth import Role
from shared.messaging.events import Channel, OptoutRegistered, Purpose
from tests.helpers import ExternalSystem, auth, eventually, marketing_export

USER = auth(Role.register_user, user="user-7f")
OWNER = auth(Role.register_owner, user="owner-7f")
MARKETING = auth(Role.marketing, user="marketer-7f")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture
async def services(start_service):
    contacts = await start_service("contacts", **FAST_HASHES)
    consent = await start_service("consent")
    return contacts, consent


def subject(person_id: str) -> dict[str, str]:
    return auth(Role.subject, user=f"person:{person_id}", person_id=person_id)


async def new_person(contacts) -> tuple[str, str]:
    email = f"olli.{uuid.uuid4().hex[:8]}@example.fi"
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Olli", "last_name": "Objektori", "emails": [email],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_phone"})
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]["id"], email


async def exported(contacts, purpose: Purpose) -> set[str]:
    return {p["id"] for p in await marketing_export(contacts.http, MARKETING, purpose=purpose.value)}


def until_left_out(contacts, person_id: str, purpose: Purpose):
    async def check() -> bool:
        return person_id not in await exported(contacts, purpose)
    return check


async def test_r13_ban_through_consent_http_leaves_the_person_out_of_that_export(services):
    contacts, consent = services
    pid, _ = await new_person(contacts)
    assert pid in await exported(contacts, Purpose.distance_selling)
    ban = await consent.http.post("/me/consents", headers=subject(pid), json={
        "purpose": "distance_selling", "channel": "phone", "decision": "ban", "method": "self_service_form"})
    assert ban.status_code == 200 and ban.json()["status"] == "banned"
    await eventually(until_left_out(contacts, pid, Purpose.distance_selling))
    assert pid in await exported(contacts, Purpose.direct_advertising)  # R13: per purpose, not all marketing


async def test_r13_r8_ban_by_email_on_the_topic_reaches_contacts_and_consent(infra, services):
    contacts, consent = services
    pid, email = await new_person(contacts)
    async with ExternalSystem(infra.bootstrap) as web_form:
        await web_form.publish(OptoutRegistered(emails=[email.upper()], purposes=[Purpose.direct_advertising],
                                                channels=[Channel.email], source="web-form",
                                                method="unsubscribe_link"), source="web-form")
    await eventually(until_left_out(contacts, pid, Purpose.direct_advertising))

    async def consent_denies() -> bool:
        resp = await consent.http.post("/checks", headers=MARKETING, json={
            "purpose": "direct_advertising", "channel": "email", "person_id": pid})
        return resp.json()["allowed"] is False
    await eventually(consent_denies)
    assert pid in await exported(contacts, Purpose.opinion_and_market_research)


async def test_r14_approved_rectification_reaches_consent(infra, services):
    contacts, consent = services
    pid, old_email = await new_person(contacts)
    keyring = consent.runtime.settings.suppression_keyring()

    async def linked(email: str) -> bool:
        return bool(await consent.runtime.pool.fetchval(
            "SELECT true FROM contact_point WHERE person_id = $1 AND digest = $2", uuid.UUID(pid), keyring.digest("email", email)))
    await eventually(lambda: linked(old_email))  # consent learnt the first address from contact-registered

    new_email = f"olli.oikea.{uuid.uuid4().hex[:8]}@example.fi"
    asked = await contacts.http.post("/me/rectifications", headers=subject(pid), json={
        "changes": {"emails": [new_email]}, "reason": "my address changed"})
    assert asked.status_code == 201, asked.text
    decided = await contacts.http.post(f"/rectifications/{asked.json()['id']}/decision", headers=OWNER,
                                       json={"approve": True, "reason": "verified by phone"})
    assert decided.json()["changed_fields"] == ["emails"]
    await eventually(lambda: linked(new_email))  # R14: the correction reached consent

    # ...and it works there: a ban on the corrected address now bans this person everywhere.
    async with ExternalSystem(infra.bootstrap) as web_form:
        await web_form.publish(OptoutRegistered(emails=[new_email], purposes=[Purpose.other_direct_marketing],
                                                source="web-form", method="unsubscribe_link"), source="web-form")

    async def consent_denies_person() -> bool:
        resp = await consent.http.post("/checks", headers=MARKETING, json={
            "purpose": "other_direct_marketing", "channel": "email", "person_id": pid})
        return resp.json()["allowed"] is False
    await eventually(consent_denies_person)
    await eventually(until_left_out(contacts, pid, Purpose.other_direct_marketing))
