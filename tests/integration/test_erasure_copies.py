"""Erasure reaches the platform's own copies (issue 15 part 3, SPEC §9): after contacts erases
a person, its outbox (relayed rows kept for replay after a broker loss) and its dead letters
hold nothing of them, so no replay can put their email back on the bus."""
from __future__ import annotations

import uuid

from shared.messaging.parsing import Incoming
from shared.messaging.events import DispositionCommanded
from shared.web.auth import Role
from tests.helpers import ExternalSystem, auth, eventually
from tests.integration.test_contacts_events import FAST_HASHES

STAFF = auth(Role.register_user, user="erasure-copies")


async def test_erasure_drops_the_persons_outbox_copies_and_dead_letters(infra, start_service):
    contacts = await start_service("contacts", **FAST_HASHES)
    email = f"copies-{uuid.uuid4().hex[:8]}@example.fi"
    resp = await contacts.http.post("/persons", headers=STAFF, json={
        "first_name": "Kopio", "last_name": "Poisto", "emails": [email], "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"], "source": "person_meeting"})
    person_id = uuid.UUID(resp.json()["person"]["id"])
    await contacts.http.post(f"/persons/{person_id}/relationships", headers=STAFF, json={"kind": "customer"})
    rel = (await contacts.http.get(f"/persons/{person_id}", headers=STAFF)).json()["relationships"][0]["id"]
    assert (await contacts.http.post(f"/relationships/{rel}/end", headers=STAFF, json={})).status_code == 200
    pool = contacts.runtime.pool

    async def copies() -> int:  # the person's personal events and the dead letters' copies (sealed since issue 15)
        return await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE (topic IN ('contact-registered', 'contact-updated') AND key = $2)"
            " OR (raw IS NOT NULL AND key IN (SELECT seal_subject::text FROM dead_letters WHERE key = $1::bytea))",
            str(person_id).encode(), str(person_id))
    assert await eventually(lambda: pool.fetchval(
        "SELECT published_at IS NOT NULL FROM outbox WHERE topic = 'contact-registered' AND key = $1", str(person_id)))
    assert await copies() >= 1  # relayed, and kept for replay
    consumer = contacts.runtime.consumers["contact-upserted"]
    await consumer.dead_letter(Incoming(f'{{"broken": "{email}"}}'.encode(), str(person_id).encode()), "test: bad event")
    assert await copies() >= 2 and await pool.fetchval(
        "SELECT count(*) FROM dead_letters WHERE key = $1", str(person_id).encode()) == 1

    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=person_id, action="erase",
                                                     basis="test"), source="retention")
    assert await eventually(lambda: pool.fetchval("SELECT true FROM erased_persons WHERE person_id = $1", person_id))
    assert await copies() == 0
    assert await pool.fetchval("SELECT count(*) FROM dead_letters WHERE key = $1", str(person_id).encode()) == 0
