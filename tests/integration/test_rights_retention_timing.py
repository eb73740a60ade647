"""Visible retention (issue 14, SPEC R6, R7, R10, R12) on the real broker and database, retention
on a simulated clock: `GET /persons/{person_id}/retention` shows when a person is passivated and
disposed of, by which rule and counted from what, and the holds; a disposition kept past its
deadline by a hold or an unconfirmed command is `blocked`, counted in
`rekisteri_dispositions_blocked_past_deadline` and listed in `GET /reports/overdue`; the access
report part carries the same facts."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.retention.domain import FrozenClock
from shared.messaging.events import (AccessRequested, AssignmentEnded, AssignmentStarted, DispositionConfirmed,
                                     RelationshipEnded, RelationshipStarted)
from tests.helpers import (ExternalSystem, auth, envelopes, eventually, read_topic, scheduler_passes_until,
                           spans_applied)

RETENTION_SETTINGS = dict(retention_scheduler_interval_s=3600, retention_confirmation_timeout_s=600)
OWNER = auth("register_owner", user="owner-timing")
USER = auth("register_user", user="user-timing")
HELSINKI = ZoneInfo("Europe/Helsinki")
KEYS = {"person_id", "state", "passivation_due", "disposition_due", "rule", "basis", "holds", "blocked",
        "overdue_since"}


@pytest.fixture
async def retention(start_service):
    svc = await start_service("retention", **RETENTION_SETTINGS)
    svc.runtime.clock = FrozenClock(datetime.now(UTC))
    return svc


async def person_with(retention, crm, *, assignment_ended_days_ago: int | None, relationship_ended: bool = True):
    now = retention.runtime.clock.now()
    person_id, rel = uuid.uuid4(), uuid.uuid4()
    await crm.publish(RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer",
                                          started_at=now - timedelta(days=900)))
    if assignment_ended_days_ago is not None:
        asg = uuid.uuid4()
        await crm.publish(AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer",
                                            started_at=now - timedelta(days=800)))
        await crm.publish(AssignmentEnded(person_id=person_id, assignment_id=asg,
                                          ended_at=now - timedelta(days=assignment_ended_days_ago)))
    if relationship_ended:
        await crm.publish(RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=now))
    has_assignment = assignment_ended_days_ago is not None
    await eventually(lambda: spans_applied(retention, person_id, ended=int(relationship_ended) + int(has_assignment),
                                           open_=not relationship_ended))
    return person_id


async def timing(retention, person_id, headers=OWNER) -> dict:
    resp = await retention.http.get(f"/persons/{person_id}/retention", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def gauge(retention) -> float:
    await retention.runtime.refresh_gauges()
    lines = (await retention.http.get("/metrics")).text.splitlines()
    [line] = [line for line in lines if line.startswith("rekisteri_dispositions_blocked_past_deadline ")]
    return float(line.split()[1])


async def test_staff_see_the_dates_the_rule_and_what_it_counts_from(infra, retention):
    async with ExternalSystem(infra.bootstrap) as crm:
        pid = await person_with(retention, crm, assignment_ended_days_ago=100)
        open_pid = await person_with(retention, crm, assignment_ended_days_ago=None, relationship_ended=False)

        async def planned():
            resp = await retention.http.get(f"/persons/{pid}/retention", headers=OWNER)
            return resp.status_code == 200 and resp.json()["disposition_due"] is not None
        assert await eventually(planned)
        await eventually(lambda: retention.runtime.pool.fetchval("SELECT 1 FROM persons WHERE person_id = $1", open_pid))
    seen = await timing(retention, pid, USER)  # a register user reads an ended person too (R10)
    assert set(seen) == KEYS and seen["rule"] == "r7.2" and seen["state"] == "ended"
    asg_end = (retention.runtime.clock.now() - timedelta(days=100)).astimezone(HELSINKI)
    assert seen["basis"] == f"last_assignment_ended {asg_end.date().isoformat()} + 365d"
    assert seen["disposition_due"] == (asg_end + timedelta(days=365)).astimezone(HELSINKI).date().isoformat()
    assert seen["passivation_due"] is not None and seen["holds"] == [] and seen["blocked"] is False
    still_open = await timing(retention, open_pid)
    assert still_open["disposition_due"] is None and "lasts" in still_open["basis"]


async def test_passivated_timing_is_the_owners_and_a_users_read_is_denied_and_audited(infra, retention):
    async with ExternalSystem(infra.bootstrap) as crm:
        pid = await person_with(retention, crm, assignment_ended_days_ago=10)
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT 1 FROM deadlines WHERE person_id = $1 AND status = 'pending'", pid))
    await retention.runtime.pool.execute("UPDATE persons SET state = 'passive' WHERE person_id = $1", pid)
    denied = await retention.http.get(f"/persons/{pid}/retention", headers=USER)
    assert denied.status_code == 403 and set(denied.json()) >= {"error", "message"}
    assert await eventually(lambda: retention.runtime.pool.fetchval(
        "SELECT 1 FROM audit_log WHERE person_id = $1 AND outcome = 'denied' AND actor = 'user-timing'", pid))
    assert (await timing(retention, pid))["state"] == "passive"
    assert await retention.runtime.pool.fetchval(
        "SELECT 1 FROM audit_log WHERE person_id = $1 AND action = 'retention.person.read' AND actor = 'owner-timing'",
        pid)
    assert (await retention.http.get(f"/persons/{uuid.uuid4()}/retention", headers=OWNER)).status_code == 404
    assert (await retention.http.get(f"/persons/{pid}/retention", headers=auth("marketing"))).status_code == 403
    assert (await retention.http.get(f"/persons/{pid}/retention")).status_code == 401


async def test_a_hold_past_the_deadline_is_blocked_in_the_view_the_gauge_and_the_report(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        pid = await person_with(retention, crm, assignment_ended_days_ago=30)
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT 1 FROM deadlines WHERE person_id = $1 AND action = 'dispose' AND status = 'pending'", pid))
    before = await gauge(retention)
    created = await retention.http.post("/holds", headers=OWNER, json={
        "person_id": str(pid), "reason": "tax audit", "expires_at": (clock.now() + timedelta(days=800)).isoformat()})
    assert created.status_code == 201, created.text
    legal = (await timing(retention, pid))["disposition_due"]
    clock.advance(days=340)  # past the deadline (a year after the assignment ended), the hold in force
    seen = await timing(retention, pid)
    assert seen["blocked"] is True and seen["overdue_since"] == legal and seen["disposition_due"] == legal
    assert [h["hold_id"] for h in seen["holds"]] == [created.json()["hold_id"]]
    assert await gauge(retention) >= before + 1
    report = (await retention.http.get("/reports/overdue?limit=1000", headers=OWNER)).json()
    mine = [b for b in report["blocked"] if b["person_id"] == str(pid)]
    assert mine and mine[0]["blocked_by"] == "hold" and mine[0]["hold_id"] == created.json()["hold_id"]
    assert report["blocked_count"] >= 1
    # The pass defers it to the hold's expiry: the legal date stays what the view shows.
    await retention.runtime.scheduler.run_due()
    assert (await timing(retention, pid))["disposition_due"] == legal


async def test_an_unconfirmed_disposition_is_blocked_once_past_the_confirmation_time(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        pid = await person_with(retention, crm, assignment_ended_days_ago=400)

        async def commanded():
            return await retention.runtime.pool.fetchval(
                "SELECT 1 FROM evidence WHERE person_id = $1 AND action <> 'passivate'", pid)
        assert await scheduler_passes_until(retention, commanded)
        cid = await retention.runtime.pool.fetchval(
            "SELECT command_id FROM evidence WHERE person_id = $1 AND action <> 'passivate'", pid)
        assert (await timing(retention, pid))["blocked"] is False  # still within its time
        await crm.publish(DispositionConfirmed(command_id=cid, person_id=pid, service="contacts", action="erase",
                                               confirmed_at=clock.now()), source="contacts")
        # Past the running service's own timeout: the session's retention may have been started
        # by another module with its settings (start_service returns the running one).
        clock.advance(seconds=retention.runtime.settings.retention_confirmation_timeout_s + 1)
        seen = await timing(retention, pid)
        assert seen["state"] == "disposing" and seen["blocked"] is True and seen["overdue_since"] is not None
        report = (await retention.http.get("/reports/overdue?limit=1000", headers=OWNER)).json()
        assert any(b["command_id"] == str(cid) and b["blocked_by"] == "unconfirmed" for b in report["blocked"])
        assert await gauge(retention) >= 1


async def test_the_access_report_part_carries_the_same_timing(infra, retention):
    async with ExternalSystem(infra.bootstrap) as contacts:
        pid = await person_with(retention, contacts, assignment_ended_days_ago=50)
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT 1 FROM deadlines WHERE person_id = $1 AND action = 'dispose' AND status = 'pending'", pid))
        request_id = uuid.uuid4()
        await contacts.publish(AccessRequested(request_id=request_id, person_id=pid), source="contacts")

    def mine(records):
        return [e for e in envelopes(records)
                if e["data"]["request_id"] == str(request_id) and e["data"]["service"] == "retention"]
    [part] = mine(await read_topic(infra.bootstrap, "access-report-part", until=lambda rs: bool(mine(rs))))
    [item] = [i for i in part["data"]["items"] if i["field"] == "timing"]
    assert item["value"] == await timing(retention, pid)
