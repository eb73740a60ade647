"""Retention on the real broker and database with a simulated clock (issue 5, R5–R8).

Contacts is not running here: the tests publish the contacts-side events (relationships,
assignments, erasures, confirmations) as `ExternalSystem`, and assert on the commands
retention publishes and on its database state.
"""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.retention.domain import FrozenClock
from shared.messaging.events import (
    AccessRequested, AssignmentEnded, AssignmentStarted, Channel, ConsentGranted, ContactErased, ContactPassivated,
    ContactReactivated,
    DispositionConfirmed, OptoutRegistered, Purpose, RelationshipEnded, RelationshipStarted,
)
from shared.messaging.parsing import Incoming, parse
from shared.messaging.topics import topic as topic_spec
from tests.helpers import (ExternalSystem, auth, envelopes, eventually, read_topic, scheduler_passes_until,
                           spans_applied)

RETENTION_SETTINGS = dict(retention_scheduler_interval_s=3600, retention_confirmation_timeout_s=600)


@pytest.fixture
async def retention(start_service):
    svc = await start_service("retention", **RETENTION_SETTINGS)
    svc.runtime.clock = FrozenClock(datetime.now(UTC))
    return svc


async def pending(svc, person_id: uuid.UUID) -> dict[str, datetime]:
    rows = await svc.runtime.pool.fetch(
        "SELECT action, due_at FROM deadlines WHERE person_id = $1 AND status = 'pending'", person_id)
    return {r["action"]: r["due_at"] for r in rows}


async def state_of(svc, person_id: uuid.UUID) -> str | None:
    return await svc.runtime.pool.fetchval("SELECT state FROM persons WHERE person_id = $1", person_id)


async def commands(infra, topic: str, person_id: uuid.UUID, count: int = 1, timeout: float = 60.0) -> list[dict]:
    """Retention's events about one person; each must pass the shared parser (the contract)."""
    def mine(records):
        return [r for r, e in zip(records, envelopes(records)) if e["data"]["person_id"] == str(person_id)]
    records = mine(await read_topic(infra.bootstrap, topic, until=lambda rs: len(mine(rs)) >= count, timeout=timeout))
    for record in records:
        parse(topic_spec(topic), Incoming(record["value"]))  # raises Rejected if retention broke the contract
    return envelopes(records)


async def command_due(svc, person_id: uuid.UUID) -> None:
    """Scheduler passes until this person's disposition is commanded (see `scheduler_passes_until`)."""
    async def commanded() -> bool:
        return any(e["action"] != "passivate" for e in await evidence(svc, person_id))
    assert await scheduler_passes_until(svc, commanded), "the disposition was never commanded"


async def _is(state, expected: str) -> bool:
    return (await state) == expected


async def evidence(svc, person_id: uuid.UUID) -> list[dict]:
    rows = await svc.runtime.pool.fetch("SELECT * FROM evidence WHERE person_id = $1 ORDER BY commanded_at", person_id)
    return [dict(r) for r in rows]


async def ended_person(svc, system: ExternalSystem, *, with_assignment: bool = True) -> uuid.UUID:
    """A person whose relationship and (optional) assignment both ended at the clock's now."""
    now = svc.runtime.clock.now()
    person_id, rel, asg = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await system.publish(RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer",
                                             started_at=now - timedelta(days=400)))
    if with_assignment:
        await system.publish(AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer",
                                               started_at=now - timedelta(days=100)))
        await system.publish(AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=now))
    await system.publish(RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=now))
    await eventually(lambda: settled(svc, person_id, spans=2 if with_assignment else 1))
    return person_id


async def settled(svc, person_id: uuid.UUID, spans: int) -> bool:
    """Every published start and end applied, timers planned. An end can be applied first and
    its start's handler still hold the person's row, which a scheduler pass then skips (SKIP LOCKED)."""
    return await spans_applied(svc, person_id, ended=spans) and bool(await pending(svc, person_id))


async def test_r7_relationship_ending_a_year_after_the_last_assignment_disposes_in_one_pass(infra, retention):
    """SPEC R7 (issue 14): the last assignment ended 372 days ago and the relationship ends now,
    so the year has passed: one scheduler pass commands the disposition (the old rule waited
    another year from the relationship end)."""
    clock = retention.runtime.clock
    now = clock.now()
    person_id, rel, asg = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish(RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer",
                                              started_at=now - timedelta(days=800)))
        await crm.publish(AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer",
                                            started_at=now - timedelta(days=500)))
        await crm.publish(AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=now - timedelta(days=372)))
        await crm.publish(RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=now))

        async def disposition_at_once():
            return (await pending(retention, person_id)) == {"dispose": now}
        assert await eventually(disposition_at_once)
        outcome = await retention.runtime.scheduler.run_due()
        assert outcome.commanded_person_ids.count(person_id) == 1
        command = (await commands(infra, "disposition-commanded", person_id))[0]["data"]
        assert command["action"] == "erase" and command["basis"].startswith("relationship_ended")


async def test_r7_timers_planned_under_an_earlier_rule_are_replanned_at_start(start_service):
    """A timer left by the old rule (a year from the relationship end) is re-planned when the
    service starts, before its first scheduler pass (issue 14)."""
    first = await start_service("retention", **RETENTION_SETTINGS)
    now = datetime.now(UTC)
    person_id = uuid.uuid4()
    async with first.runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO persons (person_id, state) VALUES ($1, 'passive')", person_id)
        await conn.execute("INSERT INTO relationships (relationship_id, person_id, ended_at) VALUES ($1, $2, $3)",
                           uuid.uuid4(), person_id, now - timedelta(days=10))
        await conn.execute("INSERT INTO assignments (assignment_id, person_id, ended_at) VALUES ($1, $2, $3)",
                           uuid.uuid4(), person_id, now - timedelta(days=300))
        await conn.execute(
            "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
            " VALUES ($1, 'dispose', $2, 'relationship_ended+disposition:365d', $3, 'grace=0d;disposition=365d')",
            person_id, now + timedelta(days=355), now - timedelta(days=10))
    replanned = await start_service("retention", fresh=True, **RETENTION_SETTINGS)

    async def replanned_timer():
        row = await replanned.runtime.pool.fetchrow(
            "SELECT due_at, basis, policy_version FROM deadlines WHERE person_id = $1 AND status = 'pending'", person_id)
        return row if row is not None and row["policy_version"] == replanned.runtime.policy.version else None
    row = await eventually(replanned_timer)
    assert row["due_at"] == now - timedelta(days=300) + timedelta(days=365)
    assert row["basis"] == "last_assignment_ended+365d"


async def test_r6_r7_open_assignment_keeps_person_active_then_passive_then_erased(infra, retention):
    """Relationship ends with an open assignment: active until it ends; passive; erased 365 days later;
    confirmed by contacts, consent, billing and retention."""
    clock = retention.runtime.clock
    person_id, rel, asg = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = clock.now()
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish(RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer", started_at=start))
        await crm.publish(AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="principal", started_at=start))
        await crm.publish(RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=start))
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT ended_at IS NOT NULL FROM relationships WHERE relationship_id = $1", rel))
        # the assignment's start travels on another topic: both facts in, whatever their order
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT true FROM assignments WHERE person_id = $1 AND assignment_id = $2", person_id, asg))
        assert await pending(retention, person_id) == {}  # R6: the open assignment keeps them active
        assert await state_of(retention, person_id) == "active"

        clock.advance(days=30)
        assert retention.runtime.clock.now() == start + timedelta(days=30)
        await retention.runtime.scheduler.run_due()
        assert await evidence(retention, person_id) == []

        asg_end = clock.now()
        await crm.publish(AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=asg_end))
        due = await eventually(lambda: pending(retention, person_id))
        assert due == {"passivate": asg_end, "dispose": asg_end + timedelta(days=365)}  # grace 0 days

        await retention.runtime.scheduler.run_due()
        passivation = (await commands(infra, "passivation-commanded", person_id))[0]["data"]
        assert await state_of(retention, person_id) == "ended"  # issue 21: passive once contacts confirms
        await crm.publish(ContactPassivated(person_id=person_id, command_id=uuid.UUID(passivation["command_id"])),
                          source="contacts")
        assert await eventually(lambda: _is(state_of(retention, person_id), "passive"))

        clock.advance(days=364)
        outcome = await retention.runtime.scheduler.run_due()
        assert person_id not in outcome.commanded_person_ids  # R7: not before the deadline
        clock.advance(days=2)
        outcome = await retention.runtime.scheduler.run_due()
        assert outcome.commanded_person_ids.count(person_id) == 1
        command = (await commands(infra, "disposition-commanded", person_id))[0]["data"]
        assert command["action"] == "erase"
        assert "last_assignment_ended" in command["basis"]

        [passive_ev, erase_ev] = await evidence(retention, person_id)
        assert passive_ev["action"] == "passivate" and str(passive_ev["command_id"]) == passivation["command_id"]
        assert erase_ev["deadline_at"] == asg_end + timedelta(days=365)
        assert erase_ev["policy_version"] == retention.runtime.policy.version
        assert erase_ev["completed_at"] is None

        cid = uuid.UUID(command["command_id"])
        await crm.publish(ContactErased(person_id=person_id, command_id=cid), source="contacts")
        for service in ("contacts", "consent", "billing"):
            await crm.publish(DispositionConfirmed(command_id=cid, person_id=person_id, service=service,
                                                   action="erase", confirmed_at=clock.now()), source=service)
    done = await eventually(lambda: retention.runtime.pool.fetchrow(
        "SELECT completed_at, confirmations FROM evidence WHERE command_id = $1 AND completed_at IS NOT NULL", cid))
    assert set(done["confirmations"]) == {"contacts", "consent", "billing", "retention"}
    # Personal tracking is gone; evidence (ids only) stays.
    assert await state_of(retention, person_id) is None
    assert await retention.runtime.pool.fetchval("SELECT count(*) FROM assignments WHERE person_id = $1", person_id) == 0
    own = await commands(infra, "disposition-confirmed", person_id, count=1)
    assert any(e["source"] == "retention" and e["data"]["command_id"] == str(cid) for e in own)


async def test_r7_marketing_permission_transfers_instead_and_r8_a_ban_erases(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as systems:
        allowed = await ended_person(retention, systems)
        banned = await ended_person(retention, systems)
        for person_id in (allowed, banned):
            await systems.publish(ConsentGranted(person_id=person_id, purpose=Purpose.direct_advertising,
                                                 channel=Channel.email, source="web", method="form", actor="self"),
                                  source="consent")
        await systems.publish(OptoutRegistered(person_id=banned, purposes=[Purpose.distance_selling],
                                               source="consent-api"), source="consent")
    await eventually(lambda: retention.runtime.pool.fetchval(
        "SELECT count(*) FROM marketing_bans WHERE person_id = $1", banned))
    await eventually(lambda: retention.runtime.pool.fetchval(
        "SELECT count(*) FROM marketing_permissions WHERE person_id = $1", allowed))
    clock.advance(days=366)
    await retention.runtime.scheduler.run_due()
    assert (await commands(infra, "disposition-commanded", allowed))[0]["data"]["action"] == "transfer_to_marketing"
    assert (await commands(infra, "disposition-commanded", banned))[0]["data"]["action"] == "erase"
    # the passivation and the transfer may come in one pass, with the same commanded_at: by action
    [transfer] = [e for e in await evidence(retention, allowed) if e["action"] == "transfer_to_marketing"]
    assert list(transfer["expected"]) == ["contacts", "consent"]


async def test_reactivation_cancels_pending_passivation_and_disposition(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        by_relationship = await ended_person(retention, crm)
        by_contacts = await ended_person(retention, crm)
        await crm.publish(RelationshipStarted(person_id=by_relationship, relationship_id=uuid.uuid4(),
                                              kind="customer", started_at=clock.now() + timedelta(days=10)))
        # contacts' announcement may come before the start it announces: the timers follow the spans
        await crm.publish(ContactReactivated(person_id=by_contacts), source="contacts")
        await crm.publish(AssignmentStarted(person_id=by_contacts, assignment_id=uuid.uuid4(), given_by="partner",
                                            started_at=clock.now() + timedelta(days=10)))
    await eventually(lambda: _no_pending(retention, by_relationship))
    await eventually(lambda: _no_pending(retention, by_contacts))
    clock.advance(days=400)
    outcome = await retention.runtime.scheduler.run_due()
    assert by_relationship not in outcome.commanded_person_ids
    assert by_contacts not in outcome.commanded_person_ids
    assert await evidence(retention, by_relationship) == []
    assert await state_of(retention, by_relationship) == "active"


async def _no_pending(svc, person_id: uuid.UUID) -> bool:
    return await pending(svc, person_id) == {}


async def test_hold_defers_disposition_until_it_expires(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        person_id = await ended_person(retention, crm)
    await retention.runtime.scheduler.run_due()  # passivation
    expires = clock.now() + timedelta(days=400)
    denied = await retention.http.post("/holds", json={"person_id": str(person_id), "reason": "litigation 12/2026",
                                                       "expires_at": expires.isoformat()}, headers=auth("register_user"))
    assert denied.status_code == 403
    bad = await retention.http.post("/holds", json={"person_id": "x", "reason": "", "expires_at": "soon"},
                                    headers=auth("register_owner"))
    assert bad.status_code == 422 and {"person_id", "reason", "expires_at"} <= set(bad.json()["fields"])
    created = await retention.http.post("/holds", json={"person_id": str(person_id), "reason": "litigation 12/2026",
                                                        "expires_at": expires.isoformat()}, headers=auth("register_owner"))
    assert created.status_code == 201, created.text

    clock.advance(days=366)
    outcome = await retention.runtime.scheduler.run_due()
    assert person_id not in outcome.commanded_person_ids and outcome.held >= 1
    held = (await retention.http.get("/reports/held", headers=auth("register_owner"))).json()
    assert str(person_id) in {h["person_id"] for h in held["items"]} and held["count"] >= 1
    assert (await pending(retention, person_id))["dispose"] == expires

    clock.advance(days=35)  # the hold has expired: re-checked at the moment of disposition
    outcome = await retention.runtime.scheduler.run_due()
    assert outcome.commanded_person_ids.count(person_id) == 1
    assert (await commands(infra, "disposition-commanded", person_id))[0]["data"]["action"] == "erase"
    too_late = await retention.http.post("/holds", json={
        "person_id": str(person_id), "reason": "late", "expires_at": (clock.now() + timedelta(days=9)).isoformat()},
        headers=auth("register_owner"))
    assert too_late.status_code == 409 and "person_id" in too_late.json()["fields"]


async def test_released_hold_lets_the_deferred_disposition_fall_due(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        person_id = await ended_person(retention, crm, with_assignment=False)
    await retention.runtime.scheduler.run_due()  # passivation: a hold defers only the disposition
    assert [e["action"] for e in await evidence(retention, person_id)] == ["passivate"]
    created = await retention.http.post("/holds", json={
        "person_id": str(person_id), "reason": "audit", "expires_at": (clock.now() + timedelta(days=900)).isoformat()},
        headers=auth("register_owner"))
    clock.advance(days=366)
    assert person_id not in (await retention.runtime.scheduler.run_due()).commanded_person_ids
    released = await retention.http.delete(f"/holds/{created.json()['hold_id']}", headers=auth("register_owner"))
    assert released.status_code == 200
    assert (await retention.runtime.scheduler.run_due()).commanded_person_ids.count(person_id) == 1
    assert [e["action"] for e in await evidence(retention, person_id)] == ["passivate", "erase"]


async def test_overdue_disposition_is_reported_and_recommanded(infra, retention):
    clock = retention.runtime.clock
    async with ExternalSystem(infra.bootstrap) as crm:
        person_id = await ended_person(retention, crm)
        clock.advance(days=366)  # every person of the session's database is due now, not just this one
        await command_due(retention, person_id)
        [first] = await commands(infra, "disposition-commanded", person_id, timeout=60)
        cid = uuid.UUID(first["data"]["command_id"])
        await crm.publish(DispositionConfirmed(command_id=cid, person_id=person_id, service="contacts",
                                               action="erase", confirmed_at=clock.now()), source="contacts")
        await eventually(lambda: retention.runtime.pool.fetchval(
            "SELECT confirmations ? 'contacts' FROM evidence WHERE command_id = $1", cid))
    clock.advance(seconds=601)
    overdue = (await retention.http.get("/reports/overdue?limit=1000", headers=auth("register_owner"))).json()
    mine = [o for o in overdue["items"] if o["command_id"] == str(cid)]
    assert mine and mine[0]["missing"] == ["billing", "consent", "retention"]
    outcome = await retention.runtime.scheduler.run_due()
    assert outcome.recommanded >= 1
    again = await commands(infra, "disposition-commanded", person_id, count=2)
    assert {e["data"]["command_id"] for e in again} == {str(cid)}  # the same command, re-sent
    row = await retention.runtime.pool.fetchrow("SELECT attempts, overdue_since FROM evidence WHERE command_id = $1", cid)
    assert row["attempts"] == 2 and row["overdue_since"] is not None
    metrics = (await retention.http.get("/metrics")).text
    gauge = [line for line in metrics.splitlines() if line.startswith("rekisteri_retention_dispositions_overdue ")]
    assert gauge and float(gauge[0].split()[1]) >= 1


async def test_due_report_and_summary_for_register_owner_only(infra, retention):
    async with ExternalSystem(infra.bootstrap) as crm:
        person_id = await ended_person(retention, crm)
    report = (await retention.http.get("/reports/due?days=366&limit=1000", headers=auth("register_owner"))).json()
    assert {"dispose", "passivate"} <= {i["action"] for i in report["items"] if i["person_id"] == str(person_id)}
    summary = await retention.http.get("/reports/summary?days=366", headers=auth("register_owner"))
    assert summary.status_code == 200 and summary.json()["due"] >= 2
    assert (await retention.http.get("/reports/due", headers=auth("marketing"))).status_code == 403
    assert (await retention.http.get("/reports/due")).status_code == 401
    body = json.dumps(report)
    assert "@" not in body  # ids and times only


async def test_r12_access_request_answered_with_retentions_slice(infra, retention):
    async with ExternalSystem(infra.bootstrap) as contacts:
        person_id = await ended_person(retention, contacts)
        request_id = uuid.uuid4()
        await contacts.publish(AccessRequested(request_id=request_id, person_id=person_id), source="contacts")

    def mine(records):
        return [e for e in envelopes(records)
                if e["data"]["request_id"] == str(request_id) and e["data"]["service"] == "retention"]
    [part] = mine(await read_topic(infra.bootstrap, "access-report-part", until=lambda rs: bool(mine(rs))))
    assert part["data"]["service"] == "retention"
    fields = {i["field"] for i in part["data"]["items"]}
    assert {"relationships", "assignments", "deadlines"} <= fields
    assert all(i["source"] and i["purpose"] for i in part["data"]["items"])
