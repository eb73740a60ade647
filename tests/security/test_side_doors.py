"""Finding 9 (issue 16; R6, R10, SPEC §5): every route that names a person id follows the same
visibility and audit rules; 401s are audited without the token; `POST /events/{topic}` is for
role `service` only; batch checks are rate-limited per user and audited with counts."""
from __future__ import annotations

import uuid

from tests.helpers import auth, token
from tests.security.conftest import OWNER, USER, new_person, passivate

MARKETING = auth("marketing", user="mk-sec")
BAN = {"purpose": "direct_advertising", "channel": "email", "decision": "ban", "method": "phone"}


async def passive_banned_person(consent) -> uuid.UUID:
    pid = uuid.uuid4()
    assert (await consent.http.post(f"/persons/{pid}/consents", headers=OWNER, json=BAN)).status_code == 200
    await consent.runtime.pool.execute("INSERT INTO passive_person (person_id) VALUES ($1)", pid)
    return pid


async def test_a_check_by_a_passivated_persons_id_tells_a_register_user_nothing(consent):
    pid = await passive_banned_person(consent)
    body = {"purpose": "direct_advertising", "channel": "email", "person_id": str(pid)}
    refused = await consent.http.post("/checks", headers=USER, json=body)
    assert refused.status_code == 403 and "banned" not in refused.text
    denied = await consent.runtime.pool.fetch(
        "SELECT actor FROM audit_log WHERE person_id = $1 AND action = 'consent.check' AND outcome = 'denied'", pid)
    assert [r["actor"] for r in denied] == ["user-sec"]
    owner = await consent.http.post("/checks", headers=OWNER, json=body)
    assert owner.status_code == 200 and owner.json()["reason"] == "banned"
    marketing = await consent.http.post("/checks", headers=MARKETING, json=body)  # never marketed to (R6)
    assert marketing.status_code == 200 and marketing.json() | body == {**body, "allowed": False,
                                                                        "reason": "restricted"}
    batch = await consent.http.post("/checks/batch", headers=MARKETING, json={
        "purpose": "direct_advertising", "channel": "email", "person_ids": [str(pid), str(uuid.uuid4())]})
    assert batch.status_code == 200
    assert batch.json()["person_ids"] == [{"allowed": False, "reason": "restricted"},
                                          {"allowed": True, "reason": "no_ban"}]


async def test_an_assignment_lists_only_visible_participants_and_audits_the_read(contacts):
    visible, hidden = await new_person(contacts), await new_person(contacts)
    made = await contacts.http.post("/assignments", headers=USER, json={
        "given_by": "customer", "participants": [str(visible), str(hidden)], "title": "Audit"})
    assert made.status_code == 201, made.text
    await passivate(contacts, hidden)
    read = await contacts.http.get(f"/assignments/{made.json()['id']}", headers=USER)
    assert read.status_code == 200
    assert [p["person_id"] for p in read.json()["participants"]] == [str(visible)]
    audited = await contacts.runtime.pool.fetch(
        "SELECT person_id FROM audit_log WHERE action = 'assignment.read' AND target = $1",
        f"assignment:{made.json()['id']}")
    assert [r["person_id"] for r in audited] == [visible]
    owner = await contacts.http.get(f"/assignments/{made.json()['id']}", headers=OWNER)
    assert sorted(p["person_id"] for p in owner.json()["participants"]) == sorted([str(visible), str(hidden)])


async def test_pending_rectifications_leave_out_passivated_persons_and_audit_the_list(contacts):
    visible, hidden = await new_person(contacts), await new_person(contacts)
    for pid in (visible, hidden):
        asked = await contacts.http.post(f"/persons/{pid}/rectifications", headers=USER,
                                         json={"changes": {"title": "CTO"}, "reason": "promoted"})
        assert asked.status_code == 201
    await passivate(contacts, hidden)
    listed = {p["person_id"] for p in (await contacts.http.get("/rectifications", headers=USER)).json()["pending"]}
    assert str(visible) in listed and str(hidden) not in listed
    assert await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'rectification.list' AND person_id = $1", visible) >= 1
    assert await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'rectification.list' AND person_id = $1", hidden) == 0


async def test_a_401_is_audited_without_the_token(contacts):
    marker = uuid.uuid4()
    bad = token("register_owner", user="x")[:-4] + "AAAA"
    for headers in ({}, {"Authorization": f"Bearer {bad}"}):
        assert (await contacts.http.get(f"/persons/{marker}", headers=headers)).status_code == 401
    rows = await contacts.runtime.pool.fetch(
        "SELECT actor, role, action, outcome, details::text AS details FROM audit_log"
        " WHERE outcome = 'unauthenticated' AND details->>'path' = $1", f"/persons/{marker}")
    assert len(rows) == 2
    assert all(r["actor"] == "anonymous" and r["action"] == "GET /persons/{person_id}" for r in rows)
    assert all(bad[:24] not in r["details"] for r in rows)


async def test_the_event_accept_is_for_role_service_only(contacts):
    owner = await contacts.http.post("/events/contact-upserted", headers=OWNER, json={"events": [{}]})
    assert owner.status_code == 403
    service = await contacts.http.post("/events/contact-upserted", headers=auth("service", user="crm"),
                                       json={"events": [{}]})
    assert service.status_code == 202


async def test_batch_checks_are_rate_limited_per_user_and_audited_with_counts(consent):
    from shared.web.ratelimit import TokenBuckets

    original = getattr(consent.app.state, "batch_check_limits", None)
    consent.app.state.batch_check_limits = TokenBuckets(1000, 10)
    user = f"mk-{uuid.uuid4().hex[:6]}"
    headers = auth("marketing", user=user)
    emails = [f"x{i}@example.fi" for i in range(600)]
    try:
        first = await consent.http.post("/checks/batch", headers=headers, json={
            "purpose": "direct_advertising", "channel": "email", "emails": emails})
        second = await consent.http.post("/checks/batch", headers=headers, json={
            "purpose": "direct_advertising", "channel": "email", "emails": emails})
        other = await consent.http.post("/checks/batch", headers=MARKETING, json={
            "purpose": "direct_advertising", "channel": "email", "emails": emails})
    finally:
        consent.app.state.batch_check_limits = original
    assert first.status_code == 200 and second.status_code == 429 and other.status_code == 200
    assert int(second.headers["retry-after"]) >= 1
    rows = await consent.runtime.pool.fetch(
        "SELECT outcome, details FROM audit_log WHERE actor = $1 AND action = 'consent.check_batch' ORDER BY id", user)
    assert [r["outcome"] for r in rows] == ["allowed", "rate_limited"]
    assert rows[0]["details"]["emails"] == 600 and rows[0]["details"]["checked"] == 600
    assert rows[1]["details"]["emails"] == 600
