"""Objections (GDPR Art. 21, R13) and erasure on request (Art. 17) in the request queue with their
deadlines (SPEC §10, issue 14), on the real database and broker: an objection to direct marketing
is applied when received (due and answered that day, the ban published on `optout-registered`
and applied in contacts at once); a general objection and an erasure request are due one
calendar month after receipt and answered by the register owner's decision with a reason; an
erasure request is answered too when the person is erased, and its grounds do not outlive them."""
from __future__ import annotations

import uuid
from datetime import date

import pytest

from services.contacts.deadlines import add_months
from shared.messaging.events import DispositionCommanded
from shared.web.auth import Role
from tests.helpers import ExternalSystem, auth, envelopes, eventually, read_topic

OWNER = auth(Role.register_owner, user="owner-21")
USER = auth(Role.register_user, user="user-21")
FAST_HASHES = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


def subject(pid: str) -> dict[str, str]:
    return auth(Role.subject, user=f"person:{pid}", person_id=pid)


async def new_person(contacts) -> str:
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Aino", "last_name": "Vastustaja", "emails": [f"aino.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]["id"]


async def queued(contacts, rid: str) -> dict:
    resp = await contacts.http.get(f"/requests/{rid}", headers=OWNER)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_objection_to_direct_marketing_is_applied_and_answered_when_received(infra, contacts):
    pid = await new_person(contacts)
    resp = await contacts.http.post("/me/objections", headers=subject(pid),
                                    json={"scope": "direct_marketing", "purposes": ["distance_selling"]})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    row = await queued(contacts, body["id"])
    assert row["kind"] == "objection" and row["due_date"] == row["received_on"]  # Art. 21(3): at once
    assert row["status"] == "answered" and body["decision"] == "applied"
    bans = await contacts.runtime.pool.fetch("SELECT purpose FROM marketing_bans WHERE person_id = $1", uuid.UUID(pid))
    assert [b["purpose"] for b in bans] == ["distance_selling"]

    def mine(records):
        return [e for e in envelopes(records) if e["data"]["person_id"] == pid]
    [event] = mine(await read_topic(infra.bootstrap, "optout-registered", until=lambda rs: bool(mine(rs))))
    assert event["source"] == "contacts" and event["data"]["purposes"] == ["distance_selling"]
    assert event["data"]["method"] == "objection"


async def test_general_objection_is_due_in_a_month_and_answered_by_a_decision(contacts):
    pid = await new_person(contacts)
    missing = await contacts.http.post(f"/persons/{pid}/objections", headers=USER, json={"scope": "processing"})
    assert missing.status_code == 422 and "grounds" in missing.json()["fields"]
    resp = await contacts.http.post(f"/persons/{pid}/objections", headers=USER,
                                    json={"scope": "processing", "grounds": "I left the sector"})
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    row = await queued(contacts, rid)
    assert row["due_date"] == add_months(date.fromisoformat(row["received_on"]), 1).isoformat()
    assert row["status"] == "open"
    wrong = await contacts.http.post(f"/objections/{rid}/decision", headers=OWNER,
                                     json={"decision": "erase", "reason": "x"})
    assert wrong.status_code == 422 and "decision" in wrong.json()["fields"]
    assert (await contacts.http.post(f"/objections/{rid}/decision", headers=USER,
                                     json={"decision": "upheld", "reason": "ok"})).status_code == 403
    done = await contacts.http.post(f"/objections/{rid}/decision", headers=OWNER,
                                    json={"decision": "upheld", "reason": "no compelling grounds"})
    assert done.status_code == 200, done.text
    assert (await queued(contacts, rid))["status"] == "answered"
    again = await contacts.http.post(f"/objections/{rid}/decision", headers=OWNER,
                                     json={"decision": "rejected", "reason": "late"})
    assert again.status_code == 409


async def test_erasure_request_is_due_in_a_month_and_answered_by_the_erasure(infra, contacts):
    pid = await new_person(contacts)
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={"kind": "customer"})
    await contacts.http.post(f"/relationships/{rel.json()['id']}/end", headers=USER, json={})
    resp = await contacts.http.post("/me/erasure-requests", headers=subject(pid),
                                    json={"grounds": "Aino Vastustaja no longer works at the customer"})
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    row = await queued(contacts, rid)
    assert row["kind"] == "erasure" and row["status"] == "open"
    assert row["due_date"] == add_months(date.fromisoformat(row["received_on"]), 1).isoformat()
    listed = (await contacts.http.get("/requests?status=open&limit=500", headers=OWNER)).json()["requests"]
    assert rid in {r["id"] for r in listed}
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=uuid.UUID(pid),
                                                     action="erase", basis="R7 test"), source="retention")

        async def answered():
            return (await queued(contacts, rid))["status"] == "answered"
        assert await eventually(answered)
    grounds = await contacts.runtime.pool.fetchval("SELECT grounds FROM subject_requests WHERE id = $1",
                                                   uuid.UUID(rid))
    assert grounds is None  # SPEC §9: free text about the person goes with them


async def test_staff_without_the_right_cannot_record_an_erasure_request(contacts):
    pid = await new_person(contacts)
    assert (await contacts.http.post(f"/persons/{pid}/erasure-requests", headers=USER, json={})).status_code == 403
    unknown = await contacts.http.post(f"/persons/{uuid.uuid4()}/erasure-requests", headers=OWNER, json={})
    assert unknown.status_code == 404
