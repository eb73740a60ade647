"""Durable timers (issue 5): two scheduler replicas never dispose twice; a restart in the
middle of a disposition loses nothing; a scheduler that was down catches up (R7)."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.retention import storage
from services.retention.domain import FrozenClock
from services.retention.scheduler import Scheduler
from shared.db import create_pool
from shared.messaging.events import AssignmentEnded, AssignmentStarted, ContactErased, DispositionConfirmed, RelationshipEnded, RelationshipStarted
from tests.helpers import ExternalSystem, eventually
from tests.integration.test_retention_lifecycle import RETENTION_SETTINGS, commands, pending


async def seed_due(pool, count: int, ended_at: datetime) -> list[uuid.UUID]:
    """Persons whose every relationship ended at `ended_at`, with their disposition timers."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO persons (person_id, state) SELECT unnest($1::uuid[]), 'passive'", ids)
        await conn.execute(
            "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
            " SELECT unnest($1::uuid[]), 'dispose', $2, 'relationship_ended+passivation:365d', $3, 'rule=r7.2;grace=0d;disposition=365d'",
            ids, ended_at + timedelta(days=365), ended_at)
    return ids


async def test_two_scheduler_replicas_never_dispose_twice_and_both_take_a_share(start_service, database_url):
    """R7: SKIP LOCKED shares the due timers between replicas; no person is commanded twice."""
    # fresh: a retention left running by another test may have its own scheduler claim these first
    svc = await start_service("retention", fresh=True, **RETENTION_SETTINGS)
    for task in svc.runtime._tasks:  # only the two replicas below may claim: stop the background pass
        if task.get_name().endswith("-scheduler"):
            task.cancel()
    now = datetime.now(UTC)
    ids = await seed_due(svc.runtime.pool, 300, now - timedelta(days=400))
    other_pool = await create_pool(database_url, "retention", max_size=4)
    try:
        replicas = [Scheduler(pool, svc.runtime.policy, FrozenClock(now), batch_size=25)
                    for pool in (svc.runtime.pool, other_pool)]
        # Two passes of each replica, all four at once: replica i ran outcomes[i] and outcomes[i + 2].
        outcomes = await asyncio.gather(*(r.run_due(now) for r in replicas), *(r.run_due(now) for r in replicas))
    finally:
        await other_pool.close()
    commanded = Counter(pid for o in outcomes for pid in o.commanded_person_ids if pid in set(ids))
    assert set(commanded) == set(ids) and max(commanded.values()) == 1
    shares = [{pid for o in (outcomes[i], outcomes[i + 2]) for pid in o.commanded_person_ids} & set(ids)
              for i in range(len(replicas))]
    assert all(shares), [len(share) for share in shares]  # each replica commanded at least one person
    evidence = await svc.runtime.pool.fetchval("SELECT count(*) FROM evidence WHERE person_id = ANY($1::uuid[])", ids)
    outbox = await svc.runtime.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'disposition-commanded' AND key = ANY($1::text[])", [str(i) for i in ids])
    assert evidence == 300 and outbox == 300


async def test_restart_in_the_middle_loses_nothing(infra, start_service):
    svc = await start_service("retention", **RETENTION_SETTINGS)
    start = datetime.now(UTC)
    person_id, rel, asg = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as crm:
        await crm.publish(RelationshipStarted(person_id=person_id, relationship_id=rel, kind="prospect", started_at=start))
        await crm.publish(AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="partner", started_at=start))
        await crm.publish(RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=start))
        await eventually(lambda: svc.runtime.pool.fetchval("SELECT count(*) FROM relationships WHERE relationship_id = $1", rel))
        await svc.stop()
        # Down: the assignment ends meanwhile; the timers must appear once retention is back.
        await crm.publish(AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=start))
        svc = await start_service("retention", fresh=True, **RETENTION_SETTINGS)
        await eventually(lambda: pending(svc, person_id))

        # Down for over a year: the background scheduler's next pass catches up with both timers.
        await svc.stop()
        svc = await start_service("retention", fresh=True, **{**RETENTION_SETTINGS, "retention_scheduler_interval_s": 0.2})
        svc.runtime.clock = FrozenClock(start + timedelta(days=366))
        actions = await eventually(lambda: _actions(svc, person_id, 2))
        assert actions == ["passivate", "erase"]
        await svc.stop()  # the commands may still be in the outbox: relayed after the restart
        svc = await start_service("retention", fresh=True, **RETENTION_SETTINGS)
        svc.runtime.clock = FrozenClock(start + timedelta(days=366))
        [command] = await commands(infra, "disposition-commanded", person_id)
        cid = uuid.UUID(command["data"]["command_id"])

        await svc.stop()  # confirmations arrive while retention is down
        await crm.publish(ContactErased(person_id=person_id, command_id=cid), source="contacts")
        for service in ("contacts", "consent", "billing"):
            await crm.publish(DispositionConfirmed(command_id=cid, person_id=person_id, service=service, action="erase",
                                                   confirmed_at=start + timedelta(days=366)), source=service)
        svc = await start_service("retention", fresh=True, **RETENTION_SETTINGS)
    row = await eventually(lambda: svc.runtime.pool.fetchrow(
        "SELECT confirmations, attempts FROM evidence WHERE command_id = $1 AND completed_at IS NOT NULL", cid))
    assert set(row["confirmations"]) == {"contacts", "consent", "billing", "retention"} and row["attempts"] == 1
    assert await svc.runtime.pool.fetchval(
        "SELECT count(*) FROM evidence WHERE person_id = $1 AND action = 'erase'", person_id) == 1


async def _actions(svc, person_id: uuid.UUID, count: int) -> list[str] | None:
    rows = await svc.runtime.pool.fetch("SELECT action FROM evidence WHERE person_id = $1 ORDER BY commanded_at, action DESC",
                                        person_id)
    return [r["action"] for r in rows] if len(rows) >= count else None


async def test_an_event_handled_while_the_person_is_erased_does_not_bring_the_tracking_back(start_service):
    """R7 (seen in CI): contacts' repeated `contact-passivated` was handled beside the person's
    `contact-erased`; its `lock_person` looked for the tombstone before the erasure committed, then
    its insert waited on the erasure's delete and made a new row: the person was tracked again."""
    svc = await start_service("retention", **RETENTION_SETTINGS)
    person = uuid.uuid4()
    await svc.runtime.pool.execute("INSERT INTO persons (person_id, state) VALUES ($1, 'passive')", person)
    async with svc.runtime.pool.acquire() as erasing, svc.runtime.pool.acquire() as handling:
        erase = erasing.transaction()
        await erase.start()
        await storage.forget_persons(erasing, [person], "erase")
        handling_pid = handling.get_server_pid()

        async def locked_in_handler() -> str | None:
            async with handling.transaction():
                return await storage.lock_person(handling, person)
        handler = asyncio.create_task(locked_in_handler())

        async def handler_waits_on_the_erasure() -> bool:
            return bool(await svc.runtime.pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", handling_pid))
        await eventually(handler_waits_on_the_erasure)
        await erase.commit()
        assert await handler is None  # the handler sees a disposed person
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM persons WHERE person_id = $1", person) == 0
