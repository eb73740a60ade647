"""Consent's HTTP API on the real database and broker: roles, validation, per-purpose bans,
ban lifting, batch checks (issue 4: R8, R10, R11, R13)."""
from __future__ import annotations

import uuid

import pytest

from shared.messaging.events import ContactRegistered, DataSource
from tests.helpers import ExternalSystem, auth, envelopes, eventually, read_topic

PURPOSES = ["direct_advertising", "distance_selling", "other_direct_marketing", "opinion_and_market_research"]


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


def change(purpose: str, decision: str, channel: str = "email", **extra) -> dict:
    return {"purpose": purpose, "channel": channel, "decision": decision, "method": "phone_call", **extra}


async def check(svc, purpose: str, channel: str = "email", **target) -> dict:
    r = await svc.http.post("/checks", headers=auth("marketing"),
                            json={"purpose": purpose, "channel": channel, **{k: str(v) for k, v in target.items()}})
    assert r.status_code == 200, r.text
    return r.json()


async def test_r13_bans_per_purpose_are_independent(infra, consent):
    person = uuid.uuid4()
    r = await consent.http.post(f"/persons/{person}/consents", headers=auth("register_user", "staff-1"),
                                json=change("direct_advertising", "ban"))
    assert r.status_code == 200 and r.json()["status"] == "banned"
    assert (await check(consent, "direct_advertising", person_id=person))["reason"] == "banned"
    assert (await check(consent, "direct_advertising", "phone", person_id=person))["allowed"] is True
    for purpose in PURPOSES[1:]:
        assert (await check(consent, purpose, person_id=person)) == {
            "purpose": purpose, "channel": "email", "allowed": True, "reason": "no_ban"}
    await consent.http.post(f"/persons/{person}/consents", headers=auth("register_user"),
                            json=change("distance_selling", "grant", notice_version="2024-05"))
    assert (await check(consent, "distance_selling", person_id=person))["reason"] == "granted"
    assert (await check(consent, "direct_advertising", person_id=person))["reason"] == "banned"
    # The API's ban is announced to contacts and retention (R13: everywhere at once).
    records = await read_topic(infra.bootstrap, "optout-registered", until=lambda rs: any(
        e["data"]["person_id"] == str(person) for e in envelopes(rs)))
    data = [e["data"] for e in envelopes(records) if e["data"]["person_id"] == str(person)]
    assert data == [{**data[0], "purposes": ["direct_advertising"], "channels": ["email"], "actor": "staff-1"}]


async def test_r13_a_ban_is_lifted_only_by_the_person_with_evidence(consent):
    person = uuid.uuid4()
    staff, me = auth("register_owner"), auth("subject", f"person:{person}", person_id=person)
    await consent.http.post(f"/persons/{person}/consents", headers=staff, json=change("distance_selling", "ban"))
    r = await consent.http.post(f"/persons/{person}/consents", headers=staff,
                                json=change("distance_selling", "grant", notice_version="v1"))
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    r = await consent.http.post("/me/consents", headers=me, json=change("distance_selling", "grant"))
    assert r.status_code == 409  # no notice version: no evidence of what the person agreed to
    assert (await check(consent, "distance_selling", person_id=person))["reason"] == "banned"
    r = await consent.http.post("/me/consents", headers=me,
                                json=change("distance_selling", "grant", method="web_form", notice_version="2024-05"))
    assert r.status_code == 200 and r.json()["status"] == "granted"
    assert (await check(consent, "distance_selling", person_id=person))["reason"] == "granted"
    view = (await consent.http.get("/me/consents", headers=me)).json()
    assert [h["change"] for h in view["history"]] == ["banned", "ban_lifted"]
    assert view["history"][1]["source"] == "self_service" and view["history"][1]["notice_version"] == "2024-05"
    r = await consent.http.post("/me/consents", headers=me, json=change("distance_selling", "withdraw"))
    assert r.json()["status"] == "unknown"
    history = (await consent.http.get(f"/persons/{person}/consents", headers=staff)).json()["history"]
    assert [h["change"] for h in history] == ["banned", "ban_lifted", "withdrawn"]  # append-only


async def test_r8_lifting_a_ban_releases_the_persons_address_from_the_suppression_list(infra, consent):
    person, email = uuid.uuid4(), f"s{uuid.uuid4().hex[:10]}@example.fi"
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(ContactRegistered(person_id=person, source=DataSource.staff, lifecycle_state="active",
                                              emails=[email]), source="contacts")

    async def linked():
        return await consent.runtime.pool.fetchval("SELECT count(*) FROM contact_point WHERE person_id = $1", person)
    await eventually(linked)
    me = auth("subject", person_id=person)
    await consent.http.post("/me/consents", headers=me, json=change("direct_advertising", "ban"))
    assert (await check(consent, "direct_advertising", email=email))["allowed"] is False
    await consent.http.post("/me/consents", headers=me,
                            json=change("direct_advertising", "grant", notice_version="2024-05"))
    assert (await check(consent, "direct_advertising", email=email))["reason"] == "granted"


@pytest.mark.parametrize(("method", "path", "body", "allowed"), [
    ("POST", "/checks", {"purpose": "direct_advertising", "channel": "email", "email": "a@example.fi"},
     {"register_owner", "register_user", "marketing", "service"}),
    ("POST", "/checks/batch", {"purpose": "direct_advertising", "channel": "email", "emails": ["a@example.fi"]},
     {"register_owner", "register_user", "marketing", "service"}),
    ("GET", "/marketing-register", None, {"register_owner", "marketing"}),
    ("GET", "/persons/{pid}/consents", None, {"register_owner", "register_user"}),
    ("POST", "/persons/{pid}/consents", change("direct_advertising", "withdraw"), {"register_owner", "register_user"}),
    ("POST", "/optouts", {"person_id": "{pid}", "purposes": ["direct_advertising"], "method": "letter"},
     {"register_owner", "register_user", "service"}),
    ("GET", "/me/consents", None, {"subject"}),
])
async def test_r10_every_check_and_change_is_authorised_by_role(consent, method, path, body, allowed):
    """Roles of SPEC §5; `subject` here acts on someone else's person id. Denials are audit-logged."""
    target = uuid.uuid4()
    path = path.format(pid=target)
    if body and body.get("person_id") == "{pid}":
        body = {**body, "person_id": str(target)}
    for role in ["register_owner", "register_user", "marketing", "billing", "subject", "service"]:
        user = f"u-{uuid.uuid4().hex[:8]}"
        headers = auth(role, user, person_id=uuid.uuid4() if role == "subject" else None)
        r = await consent.http.request(method, path, json=body, headers=headers)
        if role in allowed:
            assert r.status_code in (200, 201), (role, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code)
            assert await consent.runtime.pool.fetchval(
                "SELECT count(*) FROM audit_log WHERE actor = $1 AND outcome = 'denied'", user) == 1
    assert (await consent.http.request(method, path, json=body)).status_code == 401


async def test_r11_subject_changes_only_their_own_preferences(consent):
    me, other = uuid.uuid4(), uuid.uuid4()
    headers = auth("subject", person_id=me)
    r = await consent.http.post(f"/persons/{me}/consents", headers=headers, json=change("direct_advertising", "ban"))
    assert r.status_code == 200
    r = await consent.http.post(f"/persons/{other}/consents", headers=headers, json=change("direct_advertising", "ban"))
    assert r.status_code == 403
    assert (await check(consent, "direct_advertising", person_id=other))["allowed"] is True


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/checks", {"purpose": "spam", "channel": "email", "email": "a@example.fi"}, "purpose"),
    ("/checks", {"purpose": "distance_selling", "channel": "fax", "email": "a@example.fi"}, "channel"),
    ("/checks/batch", {"purpose": "telemarketing", "channel": "email", "emails": []}, "purpose"),
    ("/persons/{pid}/consents", {"purpose": "direct_advertising", "channel": "pigeon", "decision": "ban",
                                 "method": "x"}, "channel"),
    ("/optouts", {"person_id": "{pid}", "purposes": ["direct_advertising", "bogus"], "method": "x"}, "purposes.1"),
])
async def test_invalid_purpose_or_channel_gets_422_naming_it(consent, path, body, field):
    pid = str(uuid.uuid4())
    body = {k: (pid if v == "{pid}" else v) for k, v in body.items()}
    r = await consent.http.post(path.format(pid=pid), json=body, headers=auth("register_owner"))
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error" and field in r.json()["fields"]


async def test_invalid_contact_point_named_without_its_value(consent):
    r = await consent.http.post("/checks", headers=auth("marketing"),
                                json={"purpose": "distance_selling", "channel": "sms", "phone": "call-me-maybe"})
    assert r.status_code == 422 and "phone" in r.json()["fields"] and "call-me-maybe" not in r.text
    r = await consent.http.post("/checks", headers=auth("marketing"),
                                json={"purpose": "distance_selling", "channel": "sms"})
    assert r.status_code == 422


async def test_r8_batch_check_answers_each_entry_in_order(consent):
    banned_person, banned_email = uuid.uuid4(), f"b{uuid.uuid4().hex[:10]}@example.fi"
    r = await consent.http.post("/optouts", headers=auth("register_user"), json={
        "person_id": str(banned_person), "emails": [banned_email.upper()], "purposes": ["other_direct_marketing"],
        "channels": ["email"], "method": "letter"})
    assert r.status_code == 201 and r.json()["new_bans"] == 1
    r = await consent.http.post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "other_direct_marketing", "channel": "email",
        "emails": ["free@example.fi", banned_email, "not-an-email"],
        "phones": ["+358401111111"], "person_ids": [str(uuid.uuid4()), str(banned_person)]})
    out = r.json()
    assert [e["reason"] for e in out["emails"]] == ["no_ban", "banned", "invalid_contact_point"]
    assert [e["allowed"] for e in out["emails"]] == [True, False, False]
    assert out["phones"] == [{"allowed": True, "reason": "no_ban"}]
    assert [p["reason"] for p in out["person_ids"]] == ["no_ban", "banned"]
    assert out["checked"] == 6 and out["denied"] == 3


async def banned_for_direct_advertising(consent) -> str:
    """A new email banned for direct advertising by email (a letter to the register user)."""
    email = f"b{uuid.uuid4().hex[:10]}@example.fi"
    r = await consent.http.post("/optouts", headers=auth("register_user"), json={
        "person_id": str(uuid.uuid4()), "emails": [email], "purposes": ["direct_advertising"],
        "channels": ["email"], "method": "letter"})
    assert r.status_code == 201, r.text
    return email


@pytest.mark.parametrize("size", [5, 1500])  # a short list, and one over storage.LARGE_LIST
async def test_r8_a_contact_point_listed_twice_is_denied_at_each_place(consent, size):
    banned_email = await banned_for_direct_advertising(consent)
    emails = [f"free{i}@example.fi" for i in range(size)]
    emails[1], emails[-1] = banned_email, banned_email.upper()
    r = await consent.http.post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "email", "emails": emails})
    reasons = [e["reason"] for e in r.json()["emails"]]
    assert [i for i, reason in enumerate(reasons) if reason != "no_ban"] == [1, size - 1]
    assert reasons[1] == reasons[-1] == "banned" and r.json()["denied"] == 2


async def test_two_campaign_lists_checked_in_one_transaction_do_not_mix(consent):
    """The second list over `storage.LARGE_LIST` in one open transaction is answered alone:
    the temporary table the first went through is emptied before the second goes in."""
    from services.consent import storage
    from services.consent.handlers import hasher_for

    banned = await banned_for_direct_advertising(consent)
    digests = await hasher_for(consent.runtime.settings).digests(consent.runtime.pool)
    first = [d[0] for d in digests.emails([banned] + [f"a{i}@example.fi" for i in range(1500)]) if d]
    second = [d[0] for d in digests.emails([f"b{i}@example.fi" for i in range(1500)]) if d]
    async with consent.runtime.pool.acquire() as conn, conn.transaction():
        assert {position for position, _ in await storage.check_digests(conn, first, "direct_advertising",
                                                                        "email")} == {1}
        assert await storage.check_digests(conn, second, "direct_advertising", "email") == []


async def test_batch_check_over_100000_entries_is_rejected(consent):
    r = await consent.http.post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "email", "emails": ["x@example.fi"] * 60_000,
        "phones": ["+358401111111"] * 40_001})
    assert r.status_code == 422 and "emails" in r.json()["fields"]


async def test_r8_large_batch_check_finds_the_suppressed_among_thousands(consent):
    """Lists above storage.LARGE_LIST take the in-memory, single-process query path."""
    emails = [f"c{i}.{uuid.uuid4().hex[:8]}@example.fi" for i in range(3000)]
    persons = [uuid.uuid4() for _ in range(1500)]
    await consent.http.post("/optouts", headers=auth("service"), json={
        "emails": [emails[1234]], "purposes": ["opinion_and_market_research"], "method": "survey_reply"})
    await consent.http.post(f"/persons/{persons[777]}/consents", headers=auth("register_user"),
                            json=change("opinion_and_market_research", "ban"))
    r = await consent.http.post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "opinion_and_market_research", "channel": "email", "emails": emails,
        "person_ids": [str(p) for p in persons]})
    out = r.json()
    assert [i for i, e in enumerate(out["emails"]) if not e["allowed"]] == [1234]
    assert [i for i, e in enumerate(out["person_ids"]) if not e["allowed"]] == [777]
    assert out["denied"] == 2 and out["checked"] == 4500


async def test_r6_a_passivated_persons_consents_are_the_register_owners_only(infra, consent):
    from shared.messaging.events import ContactPassivated, ContactReactivated

    person = uuid.uuid4()
    assert (await consent.http.post(f"/persons/{person}/consents", json=change("distance_selling", "grant"),
                                    headers=auth("register_user"))).status_code == 200
    async with ExternalSystem(infra.bootstrap) as contacts:
        await contacts.publish(ContactPassivated(person_id=person), source="contacts")

        async def user_is_refused() -> bool:
            response = await consent.http.get(f"/persons/{person}/consents", headers=auth("register_user"))
            return response.status_code == 403

        await eventually(user_is_refused)
        owner = await consent.http.get(f"/persons/{person}/consents", headers=auth("register_owner"))
        assert owner.status_code == 200 and owner.json()["consents"]
        denied = await consent.runtime.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE person_id = $1 AND outcome = 'denied' AND role = 'register_user'",
            person)
        assert denied >= 1
        await contacts.publish(ContactReactivated(person_id=person), source="contacts")

        async def user_reads_again() -> bool:
            response = await consent.http.get(f"/persons/{person}/consents", headers=auth("register_user"))
            return response.status_code == 200

        await eventually(user_reads_again)
