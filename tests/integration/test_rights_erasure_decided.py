"""An erasure request the register owner decides `erase` leads to the erasure (GDPR Art. 17,
issue 14), on the real broker and database with contacts and retention running: contacts
publishes the signed `erasure-requested` in the decision's transaction, retention makes the
person's disposition an erasure due now (even while a relationship lasts, R5), and one
scheduler pass commands it and contacts erases. A legal hold in force still keeps the person
(Art. 17(3)) until it is released."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.retention import storage as retention_storage
from shared.web.auth import Role
from tests.helpers import auth, envelopes, eventually, read_topic, scheduler_passes_until

OWNER = auth(Role.register_owner, user="owner-art17")
USER = auth(Role.register_user, user="user-art17")
FAST_HASHES = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}
RETENTION_SETTINGS = dict(retention_scheduler_interval_s=3600, retention_confirmation_timeout_s=600)


@pytest.fixture
async def services(start_service):
    contacts = await start_service("contacts", **FAST_HASHES)
    retention = await start_service("retention", **RETENTION_SETTINGS)
    return contacts, retention


async def customer_with_open_relationship(contacts) -> str:
    """A person R5 would keep: their customer relationship lasts."""
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Eero", "last_name": "Poistaja", "emails": [f"eero.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["person"]["id"]
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={"kind": "customer"})
    assert rel.status_code == 201, rel.text
    return pid


async def decide_erase(contacts, pid: str) -> str:
    resp = await contacts.http.post(f"/persons/{pid}/erasure-requests", headers=OWNER,
                                    json={"grounds": "asked in writing to be erased"})
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    done = await contacts.http.post(f"/erasure-requests/{rid}/decision", headers=OWNER,
                                    json={"decision": "erase", "reason": "no ground under Art. 17(3) applies"})
    assert done.status_code == 200, done.text
    return rid


async def erasure_due(retention, pid: str, rid: str) -> bool:
    return bool(await retention.runtime.pool.fetchval(
        "SELECT 1 FROM deadlines WHERE person_id = $1 AND action = 'dispose' AND status = 'pending'"
        " AND basis = $2", uuid.UUID(pid), f"erasure_request {rid} (Art. 17)"))


def erased(contacts, pid: str):
    async def check() -> bool:
        return bool(await contacts.runtime.pool.fetchval("SELECT 1 FROM erased_persons WHERE person_id = $1",
                                                         uuid.UUID(pid)))
    return check


async def test_art17_decided_erasure_erases_the_person_in_one_scheduler_pass(infra, services):
    contacts, retention = services
    pid = await customer_with_open_relationship(contacts)
    rid = await decide_erase(contacts, pid)

    def mine(records):
        return [e for e in envelopes(records) if e["data"]["request_id"] == rid]
    [event] = mine(await read_topic(infra.bootstrap, "erasure-requested", until=lambda rs: bool(mine(rs))))
    assert event["source"] == "contacts" and event["data"]["person_id"] == pid and event.get("signature")
    assert await eventually(lambda: erasure_due(retention, pid, rid))

    assert await scheduler_passes_until(retention, erased(contacts, pid))
    [command] = await retention.runtime.pool.fetch(
        "SELECT action, basis FROM evidence WHERE person_id = $1 AND action <> 'passivate'", uuid.UUID(pid))
    assert command["action"] == "erase" and command["basis"].startswith(f"erasure_request {rid} (Art. 17)")
    assert (await contacts.http.get(f"/persons/{pid}", headers=OWNER)).status_code == 404
    answered = await contacts.http.get(f"/requests/{rid}", headers=OWNER)
    assert answered.status_code == 200 and answered.json()["status"] == "answered"


async def test_art17_3_a_legal_hold_in_force_keeps_the_person_until_released(infra, services):
    contacts, retention = services
    pid = await customer_with_open_relationship(contacts)
    await eventually(lambda: retention.runtime.pool.fetchval("SELECT 1 FROM persons WHERE person_id = $1",
                                                             uuid.UUID(pid)))
    hold = await retention.http.post("/holds", headers=OWNER, json={
        "person_id": pid, "reason": "pending litigation",
        "expires_at": (retention.runtime.clock.now() + timedelta(days=30)).isoformat()})
    assert hold.status_code == 201, hold.text
    rid = await decide_erase(contacts, pid)
    assert await eventually(lambda: erasure_due(retention, pid, rid))

    async def deferred() -> bool:
        return bool(await retention.runtime.pool.fetchval(
            "SELECT 1 FROM deadlines WHERE person_id = $1 AND action = 'dispose' AND status = 'pending'"
            " AND held_by = $2", uuid.UUID(pid), uuid.UUID(hold.json()["hold_id"])))
    assert await scheduler_passes_until(retention, deferred)
    assert not await erased(contacts, pid)()
    async with retention.runtime.pool.acquire() as conn:  # R12: the access report shows what is pending
        held = await retention_storage.person_slice(conn, uuid.UUID(pid))
    assert [str(r["request_id"]) for r in held["erasure_request"]] == [rid]
    assert (await retention.http.delete(f"/holds/{hold.json()['hold_id']}", headers=OWNER)).status_code == 200
    assert await scheduler_passes_until(retention, erased(contacts, pid))
