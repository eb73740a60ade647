"""Consent on the real broker and database: bans from events, the suppression list that
outlives erasure, re-imports, dead letters, dispositions (issue 4: R4, R7, R8, R9, R13)."""
from __future__ import annotations

import uuid

import pytest

from shared.messaging.events import (
    AccessRequested, Channel, ContactErased, ContactRegistered, ContactTransferredToMarketing, ContactUpdated,
    DataSource,
    OptoutRegistered, Purpose,
)
from shared.messaging.outbox import build_envelope
from tests.helpers import ExternalSystem, auth, envelopes, eventually, read_topic

DA, DS = Purpose.direct_advertising, Purpose.distance_selling


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


def new_email() -> str:
    return f"p{uuid.uuid4().hex[:12]}@example.fi"


async def check(svc, purpose: Purpose = DA, channel: Channel = Channel.email, **target) -> dict:
    target = {k: str(v) for k, v in target.items()}
    r = await svc.http.post("/checks", json={"purpose": purpose, "channel": channel, **target},
                            headers=auth("marketing"))
    assert r.status_code == 200, r.text
    return r.json()


def denied_for(svc, reason: str, **kw):
    async def probe():
        out = await check(svc, **kw)
        return out if (not out["allowed"] and out["reason"] == reason) else None
    return probe


async def test_r8_ban_survives_erasure_and_a_b2b_reimport_is_still_denied(infra, consent):
    """A ban registered, the person erased, the same email re-imported from a B2B register: denied."""
    person, email, phone = uuid.uuid4(), new_email(), "+35840" + str(uuid.uuid4().int)[:7]
    command_id = uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(ContactRegistered(person_id=person, source=DataSource.person_web, lifecycle_state="active",
                                              emails=[email], phones=[phone]), source="contacts")
        await other.publish(OptoutRegistered(person_id=person, purposes=[DA], source="web-form",
                                             method="unsubscribe_link", notice_version="2024-05"), source="webform")
        await eventually(denied_for(consent, "banned", email=email))
        assert (await check(consent, email=email.upper()))["allowed"] is False  # normalised before hashing
        await other.publish(ContactErased(person_id=person, command_id=command_id), source="contacts")

        async def erased():
            return await consent.runtime.pool.fetchval(
                "SELECT count(*) FROM erased_person WHERE person_id = $1", person)
        await eventually(erased)
        pool = consent.runtime.pool
        for table in ("consent_state", "consent_history", "contact_point"):  # R7: nothing else kept
            assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE person_id = $1", person) == 0
        assert (await check(consent, email=email)) == {
            "purpose": "direct_advertising", "channel": "email", "allowed": False, "reason": "suppression_list"}
        assert (await check(consent, phone=phone, channel=Channel.sms))["reason"] == "suppression_list"
        assert (await check(consent, person_id=person))["reason"] == "erased"
        # The suppression list holds keyed hashes, never the address itself (R8).
        assert await pool.fetchval("SELECT count(*) FROM suppression_record WHERE position($1::bytea in digest) > 0",
                                   email.encode()) == 0

        confirmations = await read_topic(infra.bootstrap, "disposition-confirmed", until=lambda rs: any(
            e["data"]["command_id"] == str(command_id) and e["source"] == "consent" for e in envelopes(rs)))
        mine = [e["data"] for e in envelopes(confirmations)
                if e["data"]["command_id"] == str(command_id) and e["source"] == "consent"]
        assert mine[0]["service"] == "consent" and mine[0]["action"] == "erase"

        # Months later: a B2B register import brings the same email under a new person id (R4).
        reimported = uuid.uuid4()
        await other.publish(ContactRegistered(person_id=reimported, source=DataSource.b2b_register,
                                              lifecycle_state="prospect", emails=[email]), source="contacts")
        await eventually(denied_for(consent, "banned", person_id=reimported))
    assert (await check(consent, purpose=DS, person_id=reimported))["allowed"] is True  # only the banned purpose
    announced = await read_topic(infra.bootstrap, "optout-registered", until=lambda rs: any(
        e["data"]["person_id"] == str(reimported) for e in envelopes(rs)))
    ann = [e for e in envelopes(announced) if e["data"]["person_id"] == str(reimported)][0]
    assert ann["source"] == "consent" and ann["data"]["source"] == "suppression-list"
    assert ann["data"]["purposes"] == ["direct_advertising"] and email not in str(ann["data"])


async def test_r8_new_address_of_a_banned_person_joins_the_suppression_list(infra, consent):
    person, first, second = uuid.uuid4(), new_email(), new_email()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(OptoutRegistered(person_id=person, purposes=[DS], channels=[Channel.email],
                                             source="crm"), source="crm")
        await eventually(denied_for(consent, "banned", purpose=DS, person_id=person))
        await other.publish(ContactUpdated(person_id=person, changed_fields=["emails"], emails=[first, second]),
                            source="contacts")
        await eventually(denied_for(consent, "banned", purpose=DS, email=second))
        await other.publish(ContactErased(person_id=person), source="contacts")
        await eventually(denied_for(consent, "suppression_list", purpose=DS, email=second))
    assert (await check(consent, purpose=DS, email=first))["reason"] == "suppression_list"


async def test_r13_optout_by_email_only_bans_the_known_person_and_withdraws_a_permission(infra, consent):
    person, email = uuid.uuid4(), new_email()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(ContactRegistered(person_id=person, source=DataSource.staff, lifecycle_state="active",
                                              emails=[email]), source="contacts")
        r = await consent.http.post("/me/consents", headers=auth("subject", person_id=person), json={
            "purpose": "direct_advertising", "channel": "email", "decision": "grant", "method": "web_form",
            "notice_version": "2024-05"})
        assert r.json()["status"] == "granted"
        assert (await check(consent, person_id=person))["reason"] == "granted"
        await other.publish(OptoutRegistered(emails=[email], purposes=[DA], source="marketing-tool",
                                             method="reply_stop"), source="marketing-tool")
        await eventually(denied_for(consent, "banned", person_id=person))
    withdrawn = await read_topic(infra.bootstrap, "consent-withdrawn", until=lambda rs: any(
        e["data"]["person_id"] == str(person) for e in envelopes(rs)))
    data = [e["data"] for e in envelopes(withdrawn) if e["data"]["person_id"] == str(person)][0]
    assert data["purpose"] == "direct_advertising" and data["source"] == "marketing-tool"


async def test_malformed_optout_is_dead_lettered_and_the_next_is_applied(infra, consent):
    person = uuid.uuid4()
    _, _, envelope = build_envelope(OptoutRegistered(person_id=uuid.uuid4(), purposes=[DA], source="x"), source="web")
    bad_data = envelope.model_copy(update={"data": {**envelope.data, "purposes": ["spam"]}})
    raw = b'{"id": "' + uuid.uuid4().hex.encode() + b'", "broken'
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish_raw("optout-registered", raw, key=str(person).encode())
        await other.publish_envelope("optout-registered", bad_data)
        await other.publish(OptoutRegistered(person_id=person, purposes=[DA], source="web-form"), source="web")
        await eventually(denied_for(consent, "banned", person_id=person))
    pool = consent.runtime.pool
    reasons = await eventually(lambda: pool.fetch(
        "SELECT reason FROM dead_letters WHERE consumer = 'consent.optout-registered'"
        " AND original = ANY($1::bytea[])", [raw, bad_data.to_bytes()]))
    assert len(reasons) == 2 and any("purposes" in r["reason"] for r in reasons)
    def consents(records):  # contacts and retention dead-letter the same message on their own
        return [r for r in records if r["value"] == raw and r["headers"]["x-consumer"] == "consent.optout-registered"]
    assert consents(await read_topic(infra.bootstrap, "optout-registered-dlq", until=lambda rs: bool(consents(rs))))


async def test_r9_transfer_to_marketing_register_keeps_bans_and_confirms(infra, consent):
    person, command_id = uuid.uuid4(), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(OptoutRegistered(person_id=person, purposes=[DS], channels=[Channel.phone],
                                             source="crm"), source="crm")
        await other.publish(ContactTransferredToMarketing(person_id=person, command_id=command_id), source="contacts")

    async def listed_with_consents():  # the ban and the transfer come on two topics, in either order
        r = await consent.http.get("/marketing-register", params={"limit": 10000}, headers=auth("marketing"))
        return [p for p in r.json()["persons"] if p["person_id"] == str(person) and p["consents"]]
    entry = (await eventually(listed_with_consents))[0]
    assert entry["consents"] == [{"purpose": "distance_selling", "channel": "phone", "status": "banned"}]
    records = await read_topic(infra.bootstrap, "disposition-confirmed", until=lambda rs: any(
        e["data"]["command_id"] == str(command_id) and e["source"] == "consent" for e in envelopes(rs)))
    assert [e["data"]["action"] for e in envelopes(records)
            if e["data"]["command_id"] == str(command_id) and e["source"] == "consent"] == ["transfer_to_marketing"]


async def test_r12_access_request_gets_consents_history_and_suppression(infra, consent):
    person, email, request_id = uuid.uuid4(), new_email(), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(ContactRegistered(person_id=person, source=DataSource.staff, lifecycle_state="active",
                                              emails=[email]), source="contacts")
        await other.publish(OptoutRegistered(person_id=person, purposes=[DS], channels=[Channel.email],
                                             source="crm", notice_version="2024-05"), source="crm")
        await eventually(denied_for(consent, "banned", purpose=DS, email=email))
        await other.publish(AccessRequested(request_id=request_id, person_id=person, emails=[email]),
                            source="contacts")
    records = await read_topic(infra.bootstrap, "access-report-part", until=lambda rs: any(
        e["data"]["request_id"] == str(request_id) and e["data"]["service"] == "consent" for e in envelopes(rs)))
    part = [e["data"] for e in envelopes(records)
            if e["data"]["request_id"] == str(request_id) and e["data"]["service"] == "consent"][0]
    assert part["service"] == "consent"
    kinds = sorted(i["type"] for i in part["items"])
    assert kinds == ["consent_history", "consent_state", "suppression_record"]
    assert {i["purpose"] for i in part["items"]} == {"distance_selling"}


async def test_r7_late_events_do_not_bring_an_erased_person_back(infra, consent):
    person, email = uuid.uuid4(), new_email()
    async with ExternalSystem(infra.bootstrap) as other:
        await other.publish(ContactErased(person_id=person), source="contacts")
        await eventually(denied_for(consent, "erased", person_id=person))
        await other.publish(ContactUpdated(person_id=person, changed_fields=["emails"], emails=[email]),
                            source="contacts")
        await other.publish(OptoutRegistered(person_id=person, emails=[email], purposes=[DA], source="late"),
                            source="late-system")
        await eventually(denied_for(consent, "suppression_list", email=email))  # the ban's address is kept (R8)
    pool = consent.runtime.pool
    for table in ("consent_state", "consent_history", "contact_point"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE person_id = $1", person) == 0


async def test_optout_naming_nobody_is_dead_lettered(infra, consent):
    nobody = OptoutRegistered(purposes=[DA], source="web-form")
    async with ExternalSystem(infra.bootstrap) as other:
        sent = await other.publish(nobody, source="web-form")
    row = await eventually(lambda: consent.runtime.pool.fetchrow(
        "SELECT reason FROM dead_letters WHERE event_id = $1", str(sent.id)))
    assert "person_id, emails or phones" in row["reason"]
