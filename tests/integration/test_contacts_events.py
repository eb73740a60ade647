"""contacts' events on the real broker and database: imports (R4, R8: no resurrection of a
banned person), assignments (P2), retention's passivation and disposition commands (R6, R7)
with confirmations, and dead letters for events that can never be applied."""
from __future__ import annotations

import uuid

import pytest

from shared.web.auth import Role
from shared.messaging.envelope import utcnow
from shared.messaging.events import (AssignmentEnded, AssignmentStarted, ContactUpserted, DataSource, DispositionCommanded,
                           OptoutRegistered, PassivationCommanded, Purpose, RelationshipStarted)
from tests.helpers import ExternalSystem, auth, envelopes, eventually, marketing_export, read_topic

USER = auth(Role.register_user, user="user-3")
MARKETING = auth(Role.marketing, user="marketer-3")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


def imported(ref: str, email: str, **extra) -> ContactUpserted:
    return ContactUpserted(external_ref=ref, source=DataSource.b2b_register, first_name="Teppo",
                           last_name="Testaaja", emails=[email], phones=["040 765 4321"],
                           organisation_business_id="2192407-7", organisation_name="Seed Oy", **extra)


async def person_by_ref(contacts, ref: str):
    return await contacts.runtime.pool.fetchrow("SELECT * FROM persons WHERE external_ref = $1", ref)


async def state_of(contacts, pid: uuid.UUID) -> str | None:
    return await contacts.runtime.pool.fetchval("SELECT lifecycle_state FROM persons WHERE id = $1", pid)


async def wait_state(contacts, pid: uuid.UUID, expected: str) -> None:
    async def check() -> bool:
        return await state_of(contacts, pid) == expected
    await eventually(check)


async def test_r4_import_registers_then_updates_with_sources(infra, contacts):
    ref, email = f"b2b-{uuid.uuid4()}", f"teppo.{uuid.uuid4().hex[:8]}@Example.fi"
    async with ExternalSystem(infra.bootstrap) as b2b:
        await b2b.publish(imported(ref, email), source="b2b-import")
        person = await eventually(lambda: person_by_ref(contacts, ref))
        assert person["emails"] == [email.lower()] and person["phones"] == ["+358407654321"]
        org = await contacts.runtime.pool.fetchrow("SELECT business_id FROM organisations WHERE id = $1",
                                                   person["organisation_id"])
        assert org["business_id"] == "2192407-7"
        await b2b.publish(ContactUpserted(external_ref=ref, source=DataSource.person_phone, first_name="Teppo",
                                          last_name="Testaaja", title="CIO"), source="crm")

        async def titled():
            return (await person_by_ref(contacts, ref))["title"] == "CIO"
        await eventually(titled)
    sources = {r["field"]: r["source"] for r in await contacts.runtime.pool.fetch(
        "SELECT field, source FROM field_sources WHERE person_id = $1", person["id"])}
    assert sources["emails"] == "b2b_register" and sources["title"] == "person_phone"
    assert (await person_by_ref(contacts, ref))["emails"] == [email.lower()]  # not wiped by a partial update
    records = await read_topic(infra.bootstrap, "contact-updated", until=lambda rs: any(
        e["data"]["person_id"] == str(person["id"]) and e["data"]["cause"] == "import" for e in envelopes(rs)))
    assert records


async def test_r4_r8_banned_person_reimported_is_not_resurrected_for_marketing(infra, contacts):
    """A ban by contact point outlives the person: the re-imported person is banned at once."""
    email = f"banned.{uuid.uuid4().hex[:8]}@example.fi"
    async with ExternalSystem(infra.bootstrap) as systems:
        await systems.publish(OptoutRegistered(emails=[email], purposes=list(Purpose), source="phone call"),
                              source="consent")
        keyed = contacts.runtime.settings.suppression_keyring().digest("email", email)  # SPEC §9: keyed, not SHA-256
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT count(*) FROM suppressed_contact_points WHERE digest = $1", keyed))
        ref = f"b2b-{uuid.uuid4()}"
        await systems.publish(imported(ref, email.upper()), source="b2b-import")
        person = await eventually(lambda: person_by_ref(contacts, ref))
    bans = await contacts.runtime.pool.fetchval("SELECT count(*) FROM marketing_bans WHERE person_id = $1", person["id"])
    assert bans == len(Purpose)
    assert str(person["id"]) not in {p["id"] for p in await marketing_export(contacts.http, MARKETING)}
    # the suppression keeps digests, never the address itself (R8 without keeping more than needed)
    assert await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM suppressed_contact_points WHERE digest = $1", email.encode()) == 0


async def test_p2_assignment_events_activate_and_end(infra, contacts):
    ref = f"crm-{uuid.uuid4()}"
    async with ExternalSystem(infra.bootstrap) as portal:
        await portal.publish(imported(ref, f"a.{uuid.uuid4().hex[:8]}@example.fi"), source="crm")
        pid = (await eventually(lambda: person_by_ref(contacts, ref)))["id"]
        assignment_id = uuid.uuid4()
        await portal.publish(AssignmentStarted(person_id=pid, assignment_id=assignment_id, given_by="principal",
                                               started_at=utcnow()), source="portal")
        await wait_state(contacts, pid, "active")
        await portal.publish(AssignmentEnded(person_id=pid, assignment_id=assignment_id, ended_at=utcnow()),
                             source="portal")
        await wait_state(contacts, pid, "ended")
    assignment = (await contacts.http.get(f"/assignments/{assignment_id}", headers=USER)).json()
    assert assignment["status"] == "ended" and assignment["given_by"] == "principal"


async def _ended_person(infra, contacts) -> uuid.UUID:
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Liisa", "last_name": "Loppu", "emails": [f"l.{uuid.uuid4().hex[:8]}@example.fi"],
        "title": "CFO", "expertise": "Finance", "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"]})
    pid = resp.json()["person"]["id"]
    assignment = await contacts.http.post("/assignments", headers=USER, json={
        "given_by": "customer", "participants": [pid], "title": "Migration"})
    assert assignment.status_code == 201, assignment.text
    await contacts.http.post(f"/persons/{pid}/records", headers=USER,
                             json={"kind": "order", "description": "Cloud hosting order"})
    await contacts.http.post(f"/persons/{pid}/account", headers=USER,
                             json={"username": f"liisa-{uuid.uuid4().hex[:6]}"})
    ended = await contacts.http.post(f"/assignments/{assignment.json()['id']}/end", headers=USER, json={})
    assert ended.status_code == 200
    assert await state_of(contacts, uuid.UUID(pid)) == "ended"
    return uuid.UUID(pid)


async def confirmations(infra, command_id: uuid.UUID) -> list[dict]:
    records = await read_topic(infra.bootstrap, "disposition-confirmed", until=lambda rs: any(
        e["data"]["command_id"] == str(command_id) for e in envelopes(rs)))
    return [e["data"] for e in envelopes(records) if e["data"]["command_id"] == str(command_id)]


async def test_r6_passivation_command_passivates_and_confirms(infra, contacts):
    pid = await _ended_person(infra, contacts)
    command_id = uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(PassivationCommanded(command_id=command_id, person_id=pid, basis="R6"),
                                source="retention")
    await wait_state(contacts, pid, "passive")
    confirmed = await confirmations(infra, command_id)
    assert confirmed[0]["service"] == "contacts" and confirmed[0]["action"] == "passivate"
    records = await read_topic(infra.bootstrap, "contact-passivated", until=lambda rs: any(
        e["data"]["person_id"] == str(pid) for e in envelopes(rs)))
    assert records


async def test_r7_erasure_removes_everything_and_confirms(infra, contacts):
    pid = await _ended_person(infra, contacts)
    command_id = uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=command_id, person_id=pid, action="erase",
                                                     basis="R7"), source="retention")
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT true FROM erased_persons WHERE person_id = $1", pid))
        pool = contacts.runtime.pool
        for table in ("persons", "accounts", "field_sources", "assignment_participants", "service_records",
                      "relationships", "marketing_bans", "rectifications"):
            column = "id" if table == "persons" else "person_id"
            assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", pid) == 0, table
        assert (await contacts.http.get(f"/persons/{pid}", headers=USER)).status_code == 404
        assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE person_id = $1", pid) > 0  # ids only
        confirmed = await confirmations(infra, command_id)
        assert confirmed[0]["action"] == "erase"
        erased = await read_topic(infra.bootstrap, "contact-erased", until=lambda rs: any(
            e["data"]["person_id"] == str(pid) for e in envelopes(rs)))
        assert erased
        # a late relationship event for the erased person is skipped, not dead-lettered, nothing resurrected
        await retention.publish(RelationshipStarted(person_id=pid, relationship_id=uuid.uuid4(), kind="customer",
                                                    started_at=utcnow()), source="crm")
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) FROM inbox WHERE topic = 'relationship-started' AND source = 'crm'"))
    assert await state_of(contacts, pid) is None


async def test_r7_transfer_to_marketing_keeps_only_marketing_data(infra, contacts):
    pid = await _ended_person(infra, contacts)
    command_id = uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=command_id, person_id=pid,
                                                     action="transfer_to_marketing", basis="R7"), source="retention")
    await wait_state(contacts, pid, "marketing")
    pool = contacts.runtime.pool
    row = await pool.fetchrow("SELECT * FROM persons WHERE id = $1", pid)
    assert row["expertise"] is None and row["emails"] and row["title"] == "CFO"
    for table in ("accounts", "assignment_participants", "service_records"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE person_id = $1", pid) == 0, table
    confirmed = await confirmations(infra, command_id)
    assert confirmed[0]["action"] == "transfer_to_marketing"
    assert str(pid) in {p["id"] for p in await marketing_export(contacts.http, MARKETING)}


async def test_commands_for_a_person_never_held_are_confirmed_not_dead_lettered(infra, contacts):
    """A refused command never completes retention's evidence, and retention re-sends it after
    each confirmation timeout for ever: contacts, which holds nothing of the person, confirms."""
    ghost, passivate_id, erase_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as retention:
        sent = [await retention.publish(PassivationCommanded(command_id=passivate_id, person_id=ghost, basis="R6"),
                                        source="retention"),
                await retention.publish(DispositionCommanded(command_id=erase_id, person_id=ghost, action="erase",
                                                             basis="R7"), source="retention")]
    assert [c["action"] for c in await confirmations(infra, passivate_id)] == ["passivate"]
    assert [c["action"] for c in await confirmations(infra, erase_id)] == ["erase"]
    pool = contacts.runtime.pool
    assert not await pool.fetchval("SELECT count(*) FROM dead_letters WHERE event_id = ANY($1)",
                                   [str(e.id) for e in sent])
    assert await pool.fetchval("SELECT count(*) FROM persons WHERE id = $1", ghost) == 0


async def test_unknown_person_and_invalid_import_are_dead_lettered(infra, contacts):
    ghost = uuid.uuid4()
    ref = f"b2b-{uuid.uuid4()}"
    async with ExternalSystem(infra.bootstrap) as systems:
        unknown = await systems.publish(RelationshipStarted(person_id=ghost, relationship_id=uuid.uuid4(),
                                                            kind="customer", started_at=utcnow()), source="crm")
        bad = await systems.publish(ContactUpserted(external_ref=ref, source=DataSource.b2b_register, first_name="X",
                                                    last_name="Y", organisation_business_id="2192407-8"),
                                    source="b2b-import")
        good_ref = f"b2b-{uuid.uuid4()}"
        await systems.publish(imported(good_ref, f"g.{uuid.uuid4().hex[:8]}@example.fi"), source="b2b-import")
        await eventually(lambda: person_by_ref(contacts, good_ref))  # the consumer carried on

    async def reasons():
        rows = await contacts.runtime.pool.fetch("SELECT event_id, reason FROM dead_letters WHERE event_id = ANY($1)",
                                                 [str(unknown.id), str(bad.id)])
        return {r["event_id"]: r["reason"] for r in rows}
    found = await eventually(lambda: _both(reasons))
    assert "no such person" in found[str(unknown.id)]
    assert "organisation_business_id" in found[str(bad.id)] and "2192407-8" not in found[str(bad.id)]
    assert await person_by_ref(contacts, ref) is None


async def _both(reasons):
    found = await reasons()
    return found if len(found) == 2 else None


async def test_r8_erased_banned_person_stays_suppressed_on_reimport(infra, contacts):
    """A ban made by person id only: erasure keeps its contact points as digests, so a B2B
    re-import of the same address is banned at once (R4, R8)."""
    pid = await _ended_person(infra, contacts)
    email = await contacts.runtime.pool.fetchval("SELECT emails[1] FROM persons WHERE id = $1", pid)
    async with ExternalSystem(infra.bootstrap) as systems:
        await systems.publish(OptoutRegistered(person_id=pid, purposes=[Purpose.direct_advertising],
                                               source="web form"), source="consent")
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT count(*) FROM marketing_bans WHERE person_id = $1", pid))
        await systems.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=pid, action="erase",
                                                   basis="R7"), source="retention")
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT true FROM erased_persons WHERE person_id = $1", pid))
        ref = f"b2b-{uuid.uuid4()}"
        await systems.publish(imported(ref, email), source="b2b-import")
        again = await eventually(lambda: person_by_ref(contacts, ref))
    assert again["id"] != pid
    assert await contacts.runtime.pool.fetchval(
        "SELECT array_agg(purpose) FROM marketing_bans WHERE person_id = $1", again["id"]) == ["direct_advertising"]
    exported = await marketing_export(contacts.http, MARKETING, purpose="direct_advertising")
    assert str(again["id"]) not in {p["id"] for p in exported}


async def test_spec8_http_accept_of_imports_is_durable_and_deduplicated(contacts):
    """Other systems may hand imports over HTTP: 202 after the commit, same dedupe as the topic."""
    from tests.helpers import envelope_for
    ref = f"crm-{uuid.uuid4()}"
    _topic, _key, envelope = envelope_for(imported(ref, f"h.{uuid.uuid4().hex[:8]}@example.fi"), source="crm-http")
    body = {"events": [envelope.model_dump(mode="json")]}
    service_auth = auth(Role.service, user="crm")
    first = await contacts.http.post("/events/contact-upserted", json=body, headers=service_auth)
    assert first.status_code == 202 and first.json()["accepted"] == 1
    assert await person_by_ref(contacts, ref) is not None  # committed before the 202
    again = await contacts.http.post("/events/contact-upserted", json=body, headers=service_auth)
    assert again.json()["duplicates"] == 1
    assert await contacts.runtime.pool.fetchval("SELECT count(*) FROM persons WHERE external_ref = $1", ref) == 1


async def test_late_relationship_event_after_transfer_is_skipped_not_dead_lettered(infra, contacts):
    pid = await _ended_person(infra, contacts)
    async with ExternalSystem(infra.bootstrap) as systems:
        await systems.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=pid,
                                                   action="transfer_to_marketing", basis="R7"), source="retention")
        await wait_state(contacts, pid, "marketing")
        late = await systems.publish(AssignmentEnded(person_id=pid, assignment_id=uuid.uuid4(), ended_at=utcnow()),
                                     source="portal")
        await eventually(lambda: contacts.runtime.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = $1", str(late.id)))
    assert await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM dead_letters WHERE event_id = $1", str(late.id)) == 0
    assert await state_of(contacts, pid) == "marketing"
