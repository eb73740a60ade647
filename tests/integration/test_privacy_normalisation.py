"""One normal form of a phone and an email on every path (SPEC §9, R8, R13): a ban filed in one
written form is honoured when checked in any other, through the real consent and contacts
services on the real broker and database."""
from __future__ import annotations

import random
import uuid

import pytest

from shared.messaging.events import Channel, ContactUpserted, DataSource, OptoutRegistered, Purpose
from shared.web.auth import Role
from tests.helpers import ExternalSystem, auth, eventually

MARKETING = auth(Role.marketing, user="marketer-privacy")
STAFF = auth(Role.register_user, user="staff-privacy")
FULL_WIDTH = str.maketrans("0123456789+", "０１２３４５６７８９＋")


def finnish_mobile() -> str:
    """A fresh national mobile number, `040NNNNNNN`."""
    return "040" + "".join(random.choices("0123456789", k=7))


def written_forms(national: str) -> list[str]:
    """The ways people write one number: with the trunk 0 after +358, national with spaces,
    international with spaces, and in full-width digits."""
    return [f"+3580{national[1:]}", f"{national[:3]} {national[3:6]} {national[6:]}",
            f"+358 {national[1:3]} {national[3:]}", national.translate(FULL_WIDTH),
            f"+358 {national[1:3]} {national[3:]}".translate(FULL_WIDTH)]


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


async def check(consent, **target: str) -> dict:
    r = await consent.http.post("/checks", headers=MARKETING,
                                json={"purpose": "direct_advertising", "channel": "phone", **target})
    assert r.status_code == 200, r.text
    return r.json()


async def test_r8_a_ban_filed_with_the_trunk_zero_is_found_in_every_written_form(consent):
    """The issue's case: `+3580401234567` filed, checked as `040 123 4567`, `+358 40 1234567`
    and in full-width digits, one by one and in a batch."""
    national = finnish_mobile()
    filed, *others = written_forms(national)
    r = await consent.http.post("/optouts", headers=STAFF, json={
        "phones": [filed], "purposes": ["direct_advertising"], "channels": ["phone"], "method": "phone_call"})
    assert r.status_code == 201, r.text
    for written in others:
        assert await check(consent, phone=written) == {
            "purpose": "direct_advertising", "channel": "phone", "allowed": False, "reason": "suppression_list"}, written
    r = await consent.http.post("/checks/batch", headers=MARKETING, json={
        "purpose": "direct_advertising", "channel": "phone", "phones": [*others, finnish_mobile()]})
    assert [o["allowed"] for o in r.json()["phones"]] == [False] * len(others) + [True]


async def test_r8_r13_a_ban_by_event_in_full_width_digits_is_found_in_ascii(infra, consent):
    national = finnish_mobile()
    email = f"Kirjoitettu.{uuid.uuid4().hex[:8]}@Example.FI"
    async with ExternalSystem(infra.bootstrap) as systems:
        await systems.publish(OptoutRegistered(phones=[national.translate(FULL_WIDTH)], emails=[f"  {email} "],
                                               purposes=[Purpose.direct_advertising], channels=list(Channel),
                                               source="marketing-tool", method="unsubscribe_link"),
                              source="marketing-tool")

    async def banned() -> bool:
        return not (await check(consent, phone=f"+3580{national[1:]}"))["allowed"]
    await eventually(banned)
    assert (await check(consent, email=email.lower()))["reason"] == "suppression_list"


async def test_r4_r8_contacts_bans_an_import_whose_phone_is_written_otherwise(infra, start_service):
    """contacts reads the optout event and the import with the same normaliser: the person
    imported with `040 …` is banned at once by a ban filed as `+3580…`."""
    contacts = await start_service("contacts", argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
    national = finnish_mobile()
    ref = f"b2b-{uuid.uuid4()}"
    async with ExternalSystem(infra.bootstrap) as systems:
        await systems.publish(OptoutRegistered(phones=[f"+3580{national[1:]}"], purposes=[Purpose.direct_advertising],
                                               source="phone call", method="phone_call"), source="consent")
        keyed = contacts.runtime.settings.suppression_keyring().digest("phone", f"+358{national[1:]}")
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT count(*) FROM suppressed_contact_points WHERE digest = $1", keyed))
        await systems.publish(ContactUpserted(
            external_ref=ref, source=DataSource.b2b_register, first_name="Teppo", last_name="Testaaja",
            emails=[f"teppo.{uuid.uuid4().hex[:8]}@example.fi"], phones=[written_forms(national)[1]],
            organisation_business_id="2192407-7", organisation_name="Seed Oy"), source="b2b-import")
        person = await eventually(lambda: contacts.runtime.pool.fetchrow(
            "SELECT id, phones FROM persons WHERE external_ref = $1", ref))
    assert person["phones"] == [f"+358{national[1:]}"]
    assert await contacts.runtime.pool.fetchval(
        "SELECT array_agg(purpose) FROM marketing_bans WHERE person_id = $1", person["id"]) == ["direct_advertising"]
