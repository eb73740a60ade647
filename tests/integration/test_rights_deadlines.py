"""Request deadlines on the real database and broker (SPEC §10, GDPR Art. 12(3)): every access
request and rectification is due a calendar month after receipt; the register owner's queue
lists them by status and due date, paged; an extension (1-2 months, with a reason) moves the
deadline and publishes `notification-requested` to the person; an unlawful extension is a 422
naming the field and writes nothing; an overdue request shows in the queue, the report and
`/metrics`."""
from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

import pytest

from services.contacts.deadlines import Deadline, add_months, local_date
from shared.messaging.envelope import utcnow
from shared.web.auth import Role
from shared.messaging.events import DispositionCommanded
from tests.helpers import ExternalSystem, auth, envelopes, eventually, read_topic

OWNER = auth(Role.register_owner, user="owner-14")
USER = auth(Role.register_user, user="user-14")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


async def new_person(contacts) -> str:
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Eino", "last_name": "Esimerkki", "emails": [f"eino.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]["id"]


async def access_request(contacts, pid: str) -> str:
    resp = await contacts.http.post("/access-requests", headers=OWNER, json={
        "person_id": pid, "verification": "in_person", "verified_by": "owner-14"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


async def deadline(contacts, request_id: str) -> dict:
    resp = await contacts.http.get(f"/requests/{request_id}", headers=OWNER)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def overdue_gauge(contacts) -> float:
    text = (await contacts.http.get("/metrics")).text
    return float(re.search(r"^rekisteri_requests_overdue (\S+)$", text, re.M).group(1))


async def test_access_request_and_rectification_are_due_one_calendar_month_after_receipt(contacts):
    """SPEC §10: received_at, due_date (Helsinki calendar), identity as verified on receipt."""
    pid = await new_person(contacts)
    rid = await access_request(contacts, pid)
    row = await deadline(contacts, rid)
    received = local_date(utcnow())
    assert row["kind"] == "access" and row["status"] == "open" and row["identity_method"] == "in_person"
    assert row["received_on"] == received.isoformat()
    assert row["due_date"] == add_months(received, 1).isoformat() and row["extended_until"] is None
    resp = await contacts.http.post(f"/persons/{pid}/rectifications", headers=USER,
                                    json={"changes": {"first_name": "Eeno"}, "reason": "typo"})
    assert resp.status_code == 201, resp.text
    rect = await deadline(contacts, resp.json()["id"])
    assert rect["kind"] == "rectification" and rect["due_date"] == add_months(received, 1).isoformat()
    decided = await contacts.http.post(f"/rectifications/{rect['id']}/decision", headers=USER,
                                       json={"approve": False, "reason": "the name is right"})
    assert decided.status_code == 200, decided.text
    assert (await deadline(contacts, rect["id"]))["status"] == "answered"
    late = await contacts.http.post(f"/requests/{rect['id']}/extend", headers=OWNER,
                                    json={"months": 1, "reason": "too late"})
    assert late.status_code == 409 and late.json()["fields"]["status"] == "answered"


async def test_received_31_january_is_due_28_february_in_the_stored_row(contacts):
    """The acceptance example of issue 14, through the stored deadline of a real request."""
    rid = await access_request(contacts, await new_person(contacts))
    await contacts.runtime.pool.execute(
        "UPDATE rights_requests SET received_on = '2026-01-31', due_date = $2 WHERE id = $1",
        uuid.UUID(rid), Deadline(date(2026, 1, 31)).due_date)
    assert (await deadline(contacts, rid))["due_date"] == "2026-02-28"


async def test_extension_moves_the_deadline_and_notifies_the_person(infra, contacts):
    """Art. 12(3): two further months at most, with the reason told via notification-requested."""
    pid = await new_person(contacts)
    rid = await access_request(contacts, pid)
    before = await deadline(contacts, rid)
    resp = await contacts.http.post(f"/requests/{rid}/extend", headers=OWNER,
                                    json={"months": 2, "reason": "the request covers many services"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    received = date.fromisoformat(before["received_on"])
    assert body["extended_until"] == add_months(received, 3).isoformat() and body["notified"]
    assert body["due_date"] == before["due_date"] and body["extension_reason"] == "the request covers many services"

    def mine(records):
        return [e for e in envelopes(records) if e["data"]["parameters"].get("request_id") == rid]
    event = mine(await read_topic(infra.bootstrap, "notification-requested", until=lambda rs: bool(mine(rs))))[0]
    assert event["data"]["person_id"] == pid and event["data"]["template"] == "request-extended"
    assert event["data"]["parameters"]["extended_until"] == body["extended_until"]


@pytest.mark.parametrize("body, field", [
    ({"months": 3, "reason": "volume"}, "months"), ({"months": 0, "reason": "volume"}, "months"),
    ({"months": 1}, "reason"), ({"months": 1, "reason": "  "}, "reason"), ({"reason": "volume"}, "months")])
async def test_unlawful_extension_is_422_naming_the_field_and_writes_nothing(contacts, body, field):
    """SPEC §7 error body; the request, the audit trail and the outbox are untouched."""
    pid = await new_person(contacts)
    rid = await access_request(contacts, pid)
    pool = contacts.runtime.pool
    outbox = "SELECT count(*) FROM outbox WHERE topic = 'notification-requested'"
    audits = "SELECT count(*) FROM audit_log WHERE target = $1"
    counts = (await pool.fetchval(outbox), await pool.fetchval(audits, f"request:{rid}"))
    resp = await contacts.http.post(f"/requests/{rid}/extend", headers=OWNER, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "validation_error" and field in resp.json()["fields"]
    assert (await deadline(contacts, rid))["extension_months"] == 0
    assert (await pool.fetchval(outbox), await pool.fetchval(audits, f"request:{rid}")) == counts


async def test_overdue_request_shows_in_queue_report_and_metric(contacts):
    """A request received two months ago and unanswered is overdue everywhere the owner looks.
    The person's second request within a year (chargeable, SPEC §10) waits for the owner's
    decision: nothing answers it behind the test's back, as the other services of the session
    did the first one (seen in the full suite)."""
    pid = await new_person(contacts)
    await access_request(contacts, pid)
    rid = await access_request(contacts, pid)
    before = await overdue_gauge(contacts)
    old = local_date(utcnow()) - timedelta(days=62)
    await contacts.runtime.pool.execute(
        "UPDATE rights_requests SET received_on = $2, due_date = $3 WHERE id = $1",
        uuid.UUID(rid), old, Deadline(old).due_date)
    assert await overdue_gauge(contacts) == before + 1
    report = (await contacts.http.get("/reports/overdue-requests", headers=OWNER)).json()
    assert rid in [r["id"] for r in report["requests"]]
    queued = (await contacts.http.get("/requests", headers=OWNER, params={
        "status": "open", "due_before": local_date(utcnow()).isoformat(), "limit": 500})).json()
    row = next(r for r in queued["requests"] if r["id"] == rid)
    assert row["overdue"] is True


async def test_queue_pages_with_a_cursor_in_deadline_order_without_repeats(contacts):
    pid = await new_person(contacts)
    mine = {await access_request(contacts, pid) for _ in range(3)}
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await contacts.http.get("/requests", headers=OWNER, params=params)).json()
        seen += page["requests"]
        cursor = page["next"]
        if cursor is None:
            break
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) and mine <= set(ids)
    assert [r["answer_by"] for r in seen] == sorted(r["answer_by"] for r in seen)
    bad = await contacts.http.get("/requests", headers=OWNER, params={"cursor": "nonsense"})
    assert bad.status_code == 422 and "cursor" in bad.json()["fields"]


async def test_queue_is_for_the_register_owner_only(contacts):
    assert (await contacts.http.get("/requests", headers=USER)).status_code == 403


async def test_erasure_keeps_the_extension_dates_and_fact_but_drops_its_reason(infra, contacts):
    """SPEC §9 (issue 14 part 5): the reason told to the person may name them or their affairs,
    so it must not outlive their erasure; the dates and the fact of the extension stay as the
    register's record of having answered on time. Failed before: the reason was kept."""
    pid = await new_person(contacts)
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={"kind": "customer"})
    await contacts.http.post(f"/relationships/{rel.json()['id']}/end", headers=USER, json={})
    rid = await access_request(contacts, pid)
    reason = "Eino Esimerkki's request spans the 2019 Kuopio project files"
    extended = await contacts.http.post(f"/requests/{rid}/extend", headers=OWNER, json={"months": 1, "reason": reason})
    assert extended.status_code == 200, extended.text
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=uuid.UUID(pid),
                                                     action="erase", basis="R7 test"), source="retention")
        assert await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT true FROM erased_persons WHERE person_id = $1", uuid.UUID(pid)))
    after = await deadline(contacts, rid)
    assert after["extension_months"] == 1 and after["extended_until"] == extended.json()["extended_until"]
    assert after["extended_at"] is not None and after["due_date"] == extended.json()["due_date"]
    assert after["extension_reason"] is None
    stored = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM rights_requests WHERE extension_reason LIKE '%Esimerkki%'")
    assert stored == 0
