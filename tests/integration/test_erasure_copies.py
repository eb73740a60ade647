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


async def test_erasure_drops_dead_letters_naming_the_person_only_by_email_or_phone_where_they_were_never_held(
        infra, start_service):
    """Issue 15, H1: billing and retention never held the person's email or phone, so a dead
    letter of theirs naming only those stayed until the prune. `contact-erased` now carries the
    keyed digests of both (sealed under the person's key); each service drops it by them."""
    contacts = await start_service("contacts", **FAST_HASHES)
    billing = await start_service("billing")
    retention = await start_service("retention", retention_scheduler_interval_s=3600)
    tag = uuid.uuid4().hex[:8]
    email, phone = f"vain-{tag}@example.fi", f"+35850{int(tag, 16) % 10_000_000:07d}"
    resp = await contacts.http.post("/persons", headers=STAFF, json={
        "first_name": "Vain", "last_name": "Osoite", "emails": [email], "phones": [phone],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    assert resp.status_code == 201, resp.text
    person_id = uuid.UUID(resp.json()["person"]["id"])
    await contacts.http.post(f"/persons/{person_id}/relationships", headers=STAFF, json={"kind": "customer"})
    rel = (await contacts.http.get(f"/persons/{person_id}", headers=STAFF)).json()["relationships"][0]["id"]
    assert (await contacts.http.post(f"/relationships/{rel}/end", headers=STAFF, json={})).status_code == 200
    by_email, by_phone = f'{{"contact": "{email}"}}'.encode(), f'{{"tel": "{phone[4:6]} {phone[6:]}"}}'.encode()
    kept = [(billing, "usage-recorded"), (retention, "consent-granted")]
    for service, topic in kept:  # another system's broken events, naming no person id
        for original in (by_email, by_phone):
            await service.runtime.consumers[topic].dead_letter(Incoming(original, b"other-system"), "test: bad event")

    async def dead_letters(service) -> int:
        return await service.runtime.pool.fetchval(
            "SELECT count(*) FROM dead_letters WHERE original = ANY($1::bytea[])", [by_email, by_phone])
    for service, _ in kept:
        assert await dead_letters(service) == 2

    async with ExternalSystem(infra.bootstrap) as commander:
        await commander.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=person_id, action="erase",
                                                     basis="test"), source="retention")
    for service, topic in kept:
        async def none_left() -> bool:
            return await dead_letters(service) == 0  # noqa: B023 - awaited in this iteration
        assert await eventually(none_left), topic
