"""Identity verification of requests received by email or phone, on the real database and
broker (SPEC §10): a one-time code goes to the person through `notification-requested`, only
its hash is kept; ten minutes and five tries; a wrong code is a 422 naming `code`; the clock is
paused until the right code comes back and the due date moves by the pause; the method is
recorded and the access request goes on to collect the report."""
from __future__ import annotations

import uuid
from datetime import date, timedelta

from services.contacts.deadlines import add_months, local_date
from shared.messaging.envelope import utcnow
from tests.helpers import envelopes, read_topic
from tests.integration.test_rights_deadlines import OWNER, contacts, deadline, new_person  # noqa: F401 - fixture


async def email_request(contacts, pid: str) -> str:
    resp = await contacts.http.post("/access-requests", headers=OWNER, json={
        "person_id": pid, "verification": "email", "verified_by": "owner-14"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "awaiting_identity"
    return resp.json()["id"]


async def codes_sent(infra, rid: str, count: int = 1) -> list[str]:
    def mine(records):
        return [e["data"]["parameters"]["code"] for e in envelopes(records)
                if e["data"]["template"] == "identity-code" and e["data"]["parameters"]["request_id"] == rid]
    return mine(await read_topic(infra.bootstrap, "notification-requested", until=lambda rs: len(mine(rs)) >= count))


async def verify(contacts, rid: str, code: str):
    return await contacts.http.post(f"/requests/{rid}/verify", headers=OWNER, json={"code": code})


async def test_email_request_is_verified_by_the_code_sent_to_the_person_and_then_collected(infra, contacts):
    pid = await new_person(contacts)
    rid = await email_request(contacts, pid)
    assert (await deadline(contacts, rid))["status"] == "awaiting_identity"
    [code] = await codes_sent(infra, rid)
    row = await contacts.runtime.pool.fetchrow("SELECT * FROM identity_codes WHERE request_id = $1", uuid.UUID(rid))
    assert code.encode() not in bytes(row["code_hash"]) and code not in str(dict(row))  # only the hash is kept
    assert row["tries_left"] == 5 and row["expires_at"] - row["issued_at"] == timedelta(minutes=10)

    wrong = await verify(contacts, rid, "00000000" if code != "00000000" else "11111111")
    assert wrong.status_code == 422 and "code" in wrong.json()["fields"]
    assert "4 tries left" in wrong.json()["fields"]["code"]

    ok = await verify(contacts, rid, code)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "open" and ok.json()["identity_method"] == "email_code"
    access = (await contacts.http.get(f"/access-requests/{rid}", headers=OWNER)).json()
    assert access["status"] in ("collecting", "fulfilled")

    def asked(records):
        return [e for e in envelopes(records) if e["data"]["request_id"] == rid]
    assert await read_topic(infra.bootstrap, "access-requested", until=lambda rs: bool(asked(rs)))
    again = await verify(contacts, rid, code)
    assert again.status_code == 409


async def test_a_three_day_identity_pause_moves_the_due_date_three_days(infra, contacts):
    """SPEC §10: the clock pauses while identity is unverified; received three days ago."""
    rid = await email_request(contacts, await new_person(contacts))
    [code] = await codes_sent(infra, rid)
    three_days_ago = utcnow() - timedelta(days=3)
    pool = contacts.runtime.pool
    await pool.execute("UPDATE rights_requests SET received_at = $2, received_on = $3, due_date = $4 WHERE id = $1",
                       uuid.UUID(rid), three_days_ago, local_date(three_days_ago),
                       add_months(local_date(three_days_ago), 1))
    await pool.execute("UPDATE rights_request_pauses SET started_at = $2 WHERE request_id = $1", uuid.UUID(rid),
                       three_days_ago)
    ok = await verify(contacts, rid, code)
    assert ok.status_code == 200, ok.text
    row = ok.json()
    received = date.fromisoformat(row["received_on"])
    assert row["paused_days"] == 3
    assert row["due_date"] == (add_months(received, 1) + timedelta(days=3)).isoformat()
    assert row["pauses"][0]["reason"] == "identity_unverified" and row["pauses"][0]["ended_at"] is not None


async def test_five_wrong_tries_exhaust_the_code_until_a_new_one_is_sent(infra, contacts):
    rid = await email_request(contacts, await new_person(contacts))
    [code] = await codes_sent(infra, rid)
    wrong = "x" + code
    for _ in range(5):
        assert (await verify(contacts, rid, wrong)).status_code == 422
    refused = await verify(contacts, rid, code)
    assert refused.status_code == 422 and "no tries left" in refused.json()["fields"]["code"]
    resent = await contacts.http.post(f"/requests/{rid}/identity-code", headers=OWNER)
    assert resent.status_code == 201, resent.text
    codes = await codes_sent(infra, rid, count=2)
    assert (await verify(contacts, rid, codes[-1])).status_code == 200


async def test_an_expired_code_is_refused(infra, contacts):
    rid = await email_request(contacts, await new_person(contacts))
    [code] = await codes_sent(infra, rid)
    await contacts.runtime.pool.execute("UPDATE identity_codes SET expires_at = now() - interval '1 second'"
                                        " WHERE request_id = $1", uuid.UUID(rid))
    resp = await verify(contacts, rid, code)
    assert resp.status_code == 422 and "expired" in resp.json()["fields"]["code"]
    assert (await deadline(contacts, rid))["status"] == "awaiting_identity"


async def test_a_code_request_for_nobody_in_the_register_is_422_and_writes_nothing(contacts):
    before = await contacts.runtime.pool.fetchval("SELECT count(*) FROM rights_requests")
    resp = await contacts.http.post("/access-requests", headers=OWNER, json={
        "emails": [f"nobody.{uuid.uuid4().hex[:6]}@example.fi"], "verification": "phone", "verified_by": "owner-14"})
    assert resp.status_code == 422 and "verification" in resp.json()["fields"]
    assert await contacts.runtime.pool.fetchval("SELECT count(*) FROM rights_requests") == before
