"""Finding 1, identity takeover (issue 16; SPEC §7, R10, R11): staff never set a person's
password. An account is activated by a single-use code the person receives; account routes
follow the visibility rules (R6); lifting a ban needs fresh authentication; the audit log
names the staff member behind staff actions and the person behind self-service ones."""
from __future__ import annotations

import time
import uuid

from shared.privacy.sealing import open_fields
from tests.helpers import auth, open_account
from tests.security.conftest import OWNER, USER, new_person, passivate

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(contacts, username: str, password: str = PASSWORD):
    return await contacts.http.post("/auth/login", json={"username": username, "password": password})


async def test_staff_cannot_choose_a_persons_password(contacts):
    """SPEC §7: staff never set a person's password; a body with one is refused (422)."""
    pid = await new_person(contacts)
    resp = await contacts.http.post(f"/persons/{pid}/account", headers=USER,
                                    json={"username": f"u-{uuid.uuid4().hex[:8]}", "password": PASSWORD})
    assert resp.status_code == 422 and "password" in resp.json()["fields"]
    assert await contacts.runtime.pool.fetchval("SELECT count(*) FROM accounts WHERE person_id = $1", pid) == 0


async def test_the_person_activates_the_account_with_a_single_use_code(contacts):
    """R11: the code is shown once to staff, sent through `notification-requested`, stored only
    as a slow hash; it sets the person's own password once, and only then can they log in."""
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    opened = await contacts.http.post(f"/persons/{pid}/account", headers=USER, json={"username": username})
    assert opened.status_code == 201, opened.text
    code = opened.json()["activation_code"]
    stored = await contacts.runtime.pool.fetchrow(
        "SELECT password_hash, activation_code_hash, activation_expires_at - now() AS left FROM accounts"
        " WHERE person_id = $1", pid)
    assert stored["password_hash"] is None and stored["activation_code_hash"].startswith("$argon2id$")
    assert code not in stored["activation_code_hash"]
    assert 71 * 3600 < stored["left"].total_seconds() <= 72 * 3600
    event = await contacts.runtime.pool.fetchval(
        "SELECT envelope FROM outbox WHERE topic = 'notification-requested' AND key = $1", str(pid))
    assert code not in str(event["data"])  # sealed under the person's data key (issue 15)
    event["data"] = await open_fields(contacts.runtime.keys, event["data"], ("parameters", "code"), uuid.UUID(str(pid)))
    assert event["data"] == {"person_id": str(pid), "template": "account-activation", "code": code,
                             "expires_at": event["data"]["expires_at"], "parameters": {}}
    assert (await login(contacts, username, "")).status_code in (401, 422)
    assert (await contacts.http.post("/auth/activate", json={"username": username, "code": "wrong-code-123",
                                                             "new_password": PASSWORD})).status_code == 401
    activated = await contacts.http.post("/auth/activate", json={"username": username, "code": code,
                                                                 "new_password": PASSWORD})
    assert activated.status_code == 200, activated.text
    assert (await login(contacts, username)).status_code == 200
    again = await contacts.http.post("/auth/activate", json={"username": username, "code": code,
                                                             "new_password": "an attacker's password"})
    assert again.status_code == 401  # single use
    assert (await login(contacts, username)).status_code == 200


async def test_an_expired_activation_code_is_refused(contacts):
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    code = (await contacts.http.post(f"/persons/{pid}/account", headers=USER,
                                     json={"username": username})).json()["activation_code"]
    await contacts.runtime.pool.execute(
        "UPDATE accounts SET activation_expires_at = now() - interval '1 second' WHERE person_id = $1", pid)
    resp = await contacts.http.post("/auth/activate", json={"username": username, "code": code,
                                                            "new_password": PASSWORD})
    assert resp.status_code == 401


async def test_a_register_user_cannot_open_an_account_for_a_passivated_person(contacts):
    """R6: a passivated person is not visible to a register_user: 404, and the refusal audited."""
    pid = await new_person(contacts)
    await passivate(contacts, pid)
    resp = await contacts.http.post(f"/persons/{pid}/account", headers=USER,
                                    json={"username": f"u-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 404
    assert await contacts.runtime.pool.fetchval("SELECT count(*) FROM accounts WHERE person_id = $1", pid) == 0
    denied = await contacts.runtime.pool.fetch(
        "SELECT actor, role FROM audit_log WHERE person_id = $1 AND action = 'account.create' AND outcome = 'denied'",
        pid)
    assert [(r["actor"], r["role"]) for r in denied] == [("user-sec", "register_user")]
    owner = await contacts.http.post(f"/persons/{pid}/account", headers=OWNER,
                                     json={"username": f"u-{uuid.uuid4().hex[:8]}"})
    assert owner.status_code == 201


async def test_the_audit_names_the_staff_member_and_the_person_behind_each_step(contacts):
    """R10: opening the account is the staff member's action; activation and login the person's."""
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    assert (await open_account(contacts.http, pid, username, PASSWORD, USER)).status_code == 200
    assert (await login(contacts, username)).status_code == 200
    rows = await contacts.runtime.pool.fetch(
        "SELECT action, actor, role FROM audit_log WHERE person_id = $1 AND outcome = 'allowed' ORDER BY id", pid)
    by_action = {r["action"]: (r["actor"], r["role"]) for r in rows}
    assert by_action["account.create"] == ("user-sec", "register_user")
    assert by_action["self.activate"] == (f"person:{pid}", "subject")
    assert by_action["self.login"] == (f"person:{pid}", "subject")


async def test_lifting_a_ban_needs_the_password_entered_within_five_minutes(contacts, consent):
    """R13/R11: a stolen or old self-service token cannot lift a ban; a fresh login or a
    re-authentication (password re-entry) can."""
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    assert (await open_account(contacts.http, pid, username, PASSWORD, USER)).status_code == 200
    ban = {"purpose": "distance_selling", "channel": "email", "decision": "ban", "method": "web"}
    lift = {"purpose": "distance_selling", "channel": "email", "decision": "grant", "method": "web",
            "notice_version": "2024-1"}
    stale = auth("subject", user=f"person:{pid}", person_id=pid, auth_time=int(time.time()) - 600)
    assert (await consent.http.post("/me/consents", headers=stale, json=ban)).status_code == 200
    refused = await consent.http.post("/me/consents", headers=stale, json=lift)
    assert refused.status_code == 401
    status = await consent.http.get("/me/consents", headers=stale)
    assert [c["status"] for c in status.json()["consents"] if c["purpose"] == "distance_selling"] == ["banned"]
    token = (await login(contacts, username)).json()["token"]
    wrong = await contacts.http.post("/auth/reauthenticate", headers=bearer(token), json={"password": "not it"})
    assert wrong.status_code == 401
    fresh = await contacts.http.post("/auth/reauthenticate", headers=bearer(token), json={"password": PASSWORD})
    assert fresh.status_code == 200, fresh.text
    lifted = await consent.http.post("/me/consents", headers=bearer(fresh.json()["token"]), json=lift)
    assert lifted.status_code == 200 and lifted.json()["status"] == "granted"
