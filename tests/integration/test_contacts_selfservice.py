"""contacts self-service (R11) and rectification (R14) on the real broker and database:
login with argon2id-hashed passwords and lockout, own data only, password change, and a
correction request recorded, decided with a reason, applied, audited and published."""
from __future__ import annotations

import uuid

import pytest

from shared.web.auth import Role
from tests.helpers import auth, envelopes, open_account, read_topic

USER = auth(Role.register_user, user="user-2")
OWNER = auth(Role.register_owner, user="owner-2")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
PASSWORD = "correct horse battery"


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


async def person_with_account(contacts) -> tuple[str, str]:
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Ville", "last_name": "Virtanen", "emails": [f"v.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "assignment", "purposes": ["assignments"], "source": "person_web"})
    pid = resp.json()["person"]["id"]
    username = f"ville-{uuid.uuid4().hex[:8]}"
    acc = await open_account(contacts.http, pid, username, PASSWORD, USER, nickname="Vilppu")
    assert acc.status_code == 200, acc.text
    return pid, username


async def login(contacts, username: str, password: str = PASSWORD):
    return await contacts.http.post("/auth/login", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_r3_r11_password_stored_only_as_argon2id_hash(contacts):
    pid, username = await person_with_account(contacts)
    stored = await contacts.runtime.pool.fetchval("SELECT password_hash FROM accounts WHERE person_id = $1",
                                                  uuid.UUID(pid))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    staff_view = await contacts.http.get(f"/persons/{pid}", headers=USER)
    assert "password_hash" not in staff_view.json()["account"] and "argon2" not in staff_view.text
    taken = await contacts.http.post(f"/persons/{pid}/account", headers=USER,
                                     json={"username": username})
    assert taken.status_code == 409


async def test_r11_login_then_own_data_only(contacts):
    pid, username = await person_with_account(contacts)
    other_pid, _ = await person_with_account(contacts)
    resp = await login(contacts, username)
    assert resp.status_code == 200, resp.text
    token = resp.json()["token"]
    assert username not in token  # tokens name the person id only
    me = await contacts.http.get("/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["person"]["id"] == pid
    assert me.json()["account"]["username"] == username
    # anyone else's data: refused by role, and the refusal is audited
    assert (await contacts.http.get(f"/persons/{other_pid}", headers=bearer(token))).status_code == 403
    assert (await contacts.http.patch(f"/persons/{other_pid}", headers=bearer(token),
                                      json={"title": "hacked"})).status_code == 403
    assert (await contacts.http.get("/persons", headers=bearer(token))).status_code == 403
    assert (await contacts.http.post(f"/persons/{other_pid}/rectifications", headers=bearer(token),
                                     json={"changes": {"title": "x"}, "reason": "r"})).status_code == 403
    other = await contacts.runtime.pool.fetchrow("SELECT title FROM persons WHERE id = $1", uuid.UUID(other_pid))
    assert other["title"] is None
    denied = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor = $1 AND outcome = 'denied'", f"person:{pid}")
    assert denied >= 4


async def test_r11_self_update_is_sourced_audited_and_published(infra, contacts):
    pid, username = await person_with_account(contacts)
    token = (await login(contacts, username)).json()["token"]
    resp = await contacts.http.patch("/me", headers=bearer(token),
                                     json={"phones": ["050 765 4321"], "expertise": "Kubernetes"})
    assert resp.status_code == 200, resp.text
    assert sorted(resp.json()["changed_fields"]) == ["expertise", "phones"]
    me = (await contacts.http.get("/me", headers=bearer(token))).json()
    assert me["person"]["phones"] == ["+358507654321"]
    assert me["field_sources"]["phones"]["source"] == "self_service"
    # a subject cannot move themselves to another employer (not a self-service field)
    bad = await contacts.http.patch("/me", headers=bearer(token), json={"organisation_id": str(uuid.uuid4())})
    assert bad.status_code == 422 and "organisation_id" in bad.json()["fields"]
    records = await read_topic(infra.bootstrap, "contact-updated", until=lambda rs: any(
        e["data"]["person_id"] == pid and e["data"]["cause"] == "self_service" for e in envelopes(rs)))
    assert records
    actions = [r["action"] for r in await contacts.runtime.pool.fetch(
        "SELECT action FROM audit_log WHERE person_id = $1 AND role = 'subject' ORDER BY id", uuid.UUID(pid))]
    assert "self.update" in actions and "self.read" in actions


async def test_r11_lockout_after_repeated_failures(contacts):
    pid, username = await person_with_account(contacts)
    for _ in range(4):
        assert (await login(contacts, username, "wrong password!")).status_code == 401
    fifth = await login(contacts, username, "wrong password!")
    assert fifth.status_code == 401
    locked = await login(contacts, username)  # even the right password while locked, the same answer
    assert locked.status_code == 401
    assert (await login(contacts, "no-such-user", "whatever")).status_code == 401
    assert (await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE person_id = $1 AND action = 'self.login' AND outcome <> 'allowed'",
        uuid.UUID(pid))) == 6


async def test_r11_password_change(contacts):
    _pid, username = await person_with_account(contacts)
    token = (await login(contacts, username)).json()["token"]
    wrong = await contacts.http.post("/me/password", headers=bearer(token),
                                     json={"current_password": "not it", "new_password": "a much better password"})
    assert wrong.status_code == 422 and "current_password" in wrong.json()["fields"]
    short = await contacts.http.post("/me/password", headers=bearer(token),
                                     json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 422 and "new_password" in short.json()["fields"]
    ok = await contacts.http.post("/me/password", headers=bearer(token),
                                  json={"current_password": PASSWORD, "new_password": "a much better password"})
    assert ok.status_code == 204
    assert (await login(contacts, username)).status_code == 401
    assert (await login(contacts, username, "a much better password")).status_code == 200


async def test_r14_rectification_requested_approved_applied_published(infra, contacts):
    pid, username = await person_with_account(contacts)
    token = (await login(contacts, username)).json()["token"]
    resp = await contacts.http.post("/me/rectifications", headers=bearer(token),
                                    json={"changes": {"last_name": "Virtanen-Korhonen"}, "reason": "married"})
    assert resp.status_code == 201, resp.text
    rect_id = resp.json()["id"]
    pending = (await contacts.http.get("/rectifications", headers=USER)).json()["pending"]
    assert rect_id in [p["id"] for p in pending]
    decided = await contacts.http.post(f"/rectifications/{rect_id}/decision", headers=USER,
                                       json={"approve": True, "reason": "verified by phone"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["changed_fields"] == ["last_name"]
    again = await contacts.http.post(f"/rectifications/{rect_id}/decision", headers=USER,
                                     json={"approve": False, "reason": "changed my mind"})
    assert again.status_code == 409
    person = (await contacts.http.get(f"/persons/{pid}", headers=USER)).json()
    assert person["person"]["last_name"] == "Virtanen-Korhonen"
    assert person["field_sources"]["last_name"]["source"] == "self_service"
    rect = person["rectifications"][0]
    assert rect["status"] == "approved" and rect["decision_reason"] == "verified by phone"
    records = await read_topic(infra.bootstrap, "contact-updated", until=lambda rs: any(
        e["data"].get("rectification_id") == rect_id for e in envelopes(rs)))
    event = next(e for e in envelopes(records) if e["data"].get("rectification_id") == rect_id)
    assert event["data"]["cause"] == "rectification" and event["data"]["changed_fields"] == ["last_name"]
    actions = [r["action"] for r in await contacts.runtime.pool.fetch(
        "SELECT action FROM audit_log WHERE person_id = $1 ORDER BY id", uuid.UUID(pid))]
    assert "rectification.request" in actions and "rectification.approved" in actions


async def test_r14_rejected_rectification_changes_nothing(contacts):
    pid, _ = await person_with_account(contacts)
    resp = await contacts.http.post(f"/persons/{pid}/rectifications", headers=USER,
                                    json={"changes": {"emails": ["Uusi@Example.fi"]}, "reason": "asked by phone"})
    rect_id = resp.json()["id"]
    bad = await contacts.http.post(f"/persons/{pid}/rectifications", headers=USER,
                                   json={"changes": {"emails": ["nope"]}, "reason": "x"})
    assert bad.status_code == 422 and "changes.emails.0" in bad.json()["fields"]
    no_reason = await contacts.http.post(f"/rectifications/{rect_id}/decision", headers=USER, json={"approve": False})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["fields"]
    decided = await contacts.http.post(f"/rectifications/{rect_id}/decision", headers=OWNER,
                                       json={"approve": False, "reason": "the address is correct"})
    assert decided.json()["status"] == "rejected"
    emails = await contacts.runtime.pool.fetchval("SELECT emails FROM persons WHERE id = $1", uuid.UUID(pid))
    assert "uusi@example.fi" not in emails


async def test_r6_passivated_person_keeps_access_to_own_data(infra, contacts):
    from shared.messaging.events import PassivationCommanded
    from tests.helpers import ExternalSystem, eventually
    pid, username = await person_with_account(contacts)
    rel = (await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={"kind": "customer"})).json()
    await contacts.http.post(f"/relationships/{rel['id']}/end", headers=USER, json={})
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(PassivationCommanded(command_id=uuid.uuid4(), person_id=uuid.UUID(pid), basis="R6"),
                                source="retention")

    async def passive() -> bool:
        return await contacts.runtime.pool.fetchval(
            "SELECT lifecycle_state FROM persons WHERE id = $1", uuid.UUID(pid)) == "passive"
    await eventually(passive)
    token = (await login(contacts, username)).json()["token"]
    me = await contacts.http.get("/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["person"]["lifecycle_state"] == "passive"
    assert (await contacts.http.get(f"/persons/{pid}", headers=USER)).status_code == 403


async def test_null_names_rejected_and_null_contact_points_cleared(contacts):
    pid, username = await person_with_account(contacts)
    token = (await login(contacts, username)).json()["token"]
    bad = await contacts.http.patch("/me", headers=bearer(token), json={"first_name": None, "last_name": ""})
    assert bad.status_code == 422 and {"first_name", "last_name"} <= set(bad.json()["fields"])
    staff_bad = await contacts.http.patch(f"/persons/{pid}", headers=USER, json={"first_name": None})
    assert staff_bad.status_code == 422
    cleared = await contacts.http.patch("/me", headers=bearer(token), json={"emails": None})
    assert cleared.status_code == 200, cleared.text
    assert await contacts.runtime.pool.fetchval("SELECT emails FROM persons WHERE id = $1", uuid.UUID(pid)) == []
