"""Order that holds (issue 21): a person's relationship and assignment events travel on four
topics, so consumers see them in any order. Contacts and retention, on the real broker and
database, end in the same lifecycle state whichever order the events come in."""
from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from shared.messaging.events import AssignmentEnded, AssignmentStarted, RelationshipEnded, RelationshipStarted
from shared.web.auth import Role
from tests.helpers import ExternalSystem, auth, eventually
from tests.integration.test_contacts_events import FAST_HASHES

STAFF = auth(Role.register_user, user="order-test")


def lifetime(person_id: uuid.UUID, now: datetime) -> list:
    """A relationship and an assignment that both began and ended."""
    rel, asg = uuid.uuid4(), uuid.uuid4()
    return [
        RelationshipStarted(person_id=person_id, relationship_id=rel, kind="customer", started_at=now - timedelta(days=90)),
        AssignmentStarted(person_id=person_id, assignment_id=asg, given_by="customer", started_at=now - timedelta(days=60)),
        AssignmentEnded(person_id=person_id, assignment_id=asg, ended_at=now - timedelta(days=30)),
        RelationshipEnded(person_id=person_id, relationship_id=rel, ended_at=now - timedelta(days=1)),
    ]


async def test_contacts_and_retention_converge_for_every_order_of_a_persons_events(infra, start_service):
    contacts = await start_service("contacts", **FAST_HASHES)
    retention = await start_service("retention", retention_scheduler_interval_s=3600)
    now = datetime.now(UTC)
    orders = list(itertools.permutations(range(4)))
    persons: list[uuid.UUID] = []
    for i in range(len(orders)):
        resp = await contacts.http.post("/persons", headers=STAFF, json={
            "first_name": "Järjestys", "last_name": f"Testi{i}", "emails": [f"order-{uuid.uuid4().hex[:8]}@example.fi"],
            "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
        assert resp.status_code == 201, resp.text
        persons.append(uuid.UUID(resp.json()["person"]["id"]))
    async with ExternalSystem(infra.bootstrap) as crm:
        for person_id, order in zip(persons, orders):
            events = lifetime(person_id, now)
            for index in order:
                await crm.publish(events[index])

    async def states() -> dict[uuid.UUID, tuple[str | None, str | None]]:
        seen = {}
        for person_id in persons:
            seen[person_id] = (
                await contacts.runtime.pool.fetchval("SELECT lifecycle_state FROM persons WHERE id = $1", person_id),
                await retention.runtime.pool.fetchval("SELECT state FROM persons WHERE person_id = $1", person_id))
        return seen

    async def converged():
        """Both services agree on every person, and every person's connection has ended (another
        test's scheduler may already have passivated some of them: both then say passive)."""
        seen = await states()
        return seen if all(c == r and c in ("ended", "passive") for c, r in seen.values()) else None

    assert await eventually(converged, timeout=120)
    dead = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM dead_letters WHERE convert_from(key, 'UTF8') = ANY($1::text[])",
        [str(p) for p in persons])
    assert dead == 0  # no order is dead-lettered as "no such relationship"
    still_open = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM assignments a JOIN assignment_participants p ON p.assignment_id = a.id"
        " WHERE p.person_id = ANY($1::uuid[]) AND a.status <> 'ended'", persons)
    assert still_open == 0  # an assignment whose end came first is ended too, not left open
