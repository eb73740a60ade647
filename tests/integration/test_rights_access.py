"""Right of access in contacts (R12) on the real broker and database: a verified request is
recorded and published, the other services' parts (played here by `ExternalSystem`, as
consent, retention and billing publish them; when those services run in the same test session
their own answer may come first, and the second answer of a service is ignored) are collected
into one report in JSON and
in Finnish and English HTML; a late service is named; a second request within twelve months
waits for the register owner's decision; every report read is audited (R10)."""
from __future__ import annotations

import uuid

import pytest

from services.contacts import storage
from shared.access import access_item
from shared.web.auth import Role
from shared.messaging.events import AccessReportPart, DispositionCommanded
from tests.helpers import ExternalSystem, auth, envelopes, eventually, read_topic

OWNER = auth(Role.register_owner, user="owner-7")
USER = auth(Role.register_user, user="user-7")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
OTHERS = ("billing", "consent", "retention")


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


async def new_person(contacts, **extra) -> tuple[str, str]:
    email = f"aino.{uuid.uuid4().hex[:8]}@example.fi"
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Aino", "last_name": "<Ahola>", "emails": [email], "phones": ["040 123 4567"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting",
        **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]["id"], email


def subject(person_id: str) -> dict[str, str]:
    return auth(Role.subject, user=f"person:{person_id}", person_id=person_id)


async def asked(infra, request_id: str) -> dict:
    """The request's `access-requested`, its contact points opened (`read_topic`); on the bus
    they travelled sealed (issue 15)."""
    def mine(records):
        return [r for r in records if [e for e in envelopes([r]) if e.get("data", {}).get("request_id") == request_id]]
    record = mine(await read_topic(infra.bootstrap, "access-requested", until=lambda rs: bool(mine(rs))))[0]
    event = envelopes([record])[0]
    assert all(p.encode() not in record["raw"] for p in [*event["data"]["emails"], *event["data"]["phones"]])
    return event


async def answer(system: ExternalSystem, request_id: str, person_id: str | None, services=OTHERS) -> None:
    for service in services:
        items = [access_item("example", f"{service}_field", f"{service} value", source="service_event",
                             purpose="usage_billing")]
        await system.publish(AccessReportPart(request_id=uuid.UUID(request_id), service=service,
                                              person_id=uuid.UUID(person_id) if person_id else None, items=items),
                             source=service)


async def status_of(contacts, request_id: str, headers=OWNER) -> dict:
    resp = await contacts.http.get(f"/access-requests/{request_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def fulfilled(contacts, request_id: str) -> dict:
    async def check():
        state = await status_of(contacts, request_id)
        return state if state["status"] == "fulfilled" else None
    return await eventually(check)


async def test_r12_verified_request_collects_every_service_into_one_report(infra, contacts):
    pid, email = await new_person(contacts)
    resp = await contacts.http.post("/access-requests", headers=OWNER, json={
        "person_id": pid, "verification": "signed_letter", "verified_by": "owner-7",
        "notes": "signature compared with the contract on file"})
    assert resp.status_code == 201, resp.text
    state = resp.json()
    assert state["status"] == "collecting" and not state["chargeable"]
    assert state["missing"] == list(OTHERS) and state["answered"] == ["contacts"] and not state["late"]
    early = await contacts.http.get(f"/access-requests/{state['id']}/report", headers=OWNER)
    missing = early.json()["fields"]["missing"] if early.status_code == 409 else ""
    # consent, retention or billing may run in this session (another module started them) and answer at once
    assert early.status_code == 409 and missing and set(missing.split(",")) <= set(OTHERS), early.text
    event = await asked(infra, state["id"])
    assert event["data"]["person_id"] == pid
    assert event["data"]["emails"] == [email] and event["data"]["phones"] == ["+358401234567"]

    async with ExternalSystem(infra.bootstrap) as services:
        await answer(services, state["id"], pid)
    done = await fulfilled(contacts, state["id"])
    assert done["missing"] == [] and done["answered"] == ["billing", "consent", "contacts", "retention"]

    report = (await contacts.http.get(f"/access-requests/{state['id']}/report", headers=OWNER)).json()
    assert report["services"] == ["contacts", "billing", "consent", "retention"]
    assert all(i["source"] and i["purpose"] for i in report["items"])  # R12: every item's source and purpose
    by_field = {(i["service"], i["field"]): i for i in report["items"]}
    assert by_field[("contacts", "emails")]["value"] == [email]
    assert by_field[("contacts", "emails")]["source"] == "person_meeting"  # R4
    assert by_field[("contacts", "last_name")]["purpose"] == "customer_relationship"  # R1
    assert report["identity_verified"] == {"method": "signed_letter", "by": "owner-7"}

    fi = await contacts.http.get(f"/access-requests/{state['id']}/report?format=html&lang=fi", headers=OWNER)
    en = await contacts.http.get(f"/access-requests/{state['id']}/report?format=html&lang=en", headers=OWNER)
    assert fi.headers["content-type"].startswith("text/html")
    assert "Tarkastuspyyntö" in fi.text and "Perustiedot" in fi.text and "Rekisteröity (tapaaminen)" in fi.text
    assert "Access request" in en.text and "Basic data" in en.text and "You (meeting)" in en.text
    assert "&lt;Ahola&gt;" in fi.text and "<Ahola>" not in fi.text  # values are escaped
    reads = await contacts.runtime.pool.fetch(
        "SELECT actor, details FROM audit_log WHERE action = 'access_report.read' AND target = $1",
        f"access_request:{state['id']}")
    assert len(reads) == 3 and {r["details"]["format"] for r in reads} == {"json", "html"}  # R10


async def test_r12_self_service_request_second_within_a_year_waits_for_owner(infra, contacts):
    pid, _ = await new_person(contacts)
    first = await contacts.http.post("/me/access-requests", headers=subject(pid))
    assert first.status_code == 201 and not first.json()["chargeable"]
    second = await contacts.http.post("/me/access-requests", headers=subject(pid))
    assert second.status_code == 201, second.text
    held = second.json()
    assert held["chargeable"] and held["status"] == "awaiting_decision" and held["asked_at"] is None
    # SPEC §10: the chargeable decision names the earlier free request and its date
    assert held["chargeable_because"] == {"request_id": first.json()["id"],
                                          "received_at": first.json()["created_at"]}
    queue = await contacts.http.get("/access-requests", headers=OWNER)
    queued = {r["id"]: r for r in queue.json()["access_requests"]}
    assert queued[held["id"]]["chargeable_because"]["request_id"] == first.json()["id"]
    assert not first.json()["chargeable_because"]

    staff_try = await contacts.http.post(f"/access-requests/{held['id']}/decision", headers=USER,
                                         json={"decision": "waive", "reason": "first time"})
    assert staff_try.status_code == 403
    self_try = await contacts.http.post(f"/access-requests/{held['id']}/decision", headers=subject(pid),
                                        json={"decision": "waive", "reason": "mine"})
    assert self_try.status_code == 403
    waived = await contacts.http.post(f"/access-requests/{held['id']}/decision", headers=OWNER,
                                      json={"decision": "waive", "reason": "the first report was incomplete"})
    assert waived.status_code == 200 and waived.json()["status"] == "collecting"
    assert (await asked(infra, held["id"]))["data"]["person_id"] == pid
    again = await contacts.http.post(f"/access-requests/{held['id']}/decision", headers=OWNER,
                                     json={"decision": "charge", "reason": "twice"})
    assert again.status_code == 409

    third = (await contacts.http.post("/me/access-requests", headers=subject(pid))).json()
    refused = await contacts.http.post(f"/access-requests/{third['id']}/decision", headers=OWNER,
                                       json={"decision": "refuse", "reason": "manifestly excessive"})
    assert refused.json()["status"] == "refused"
    report = await contacts.http.get(f"/access-requests/{third['id']}/report", headers=subject(pid))
    assert report.status_code == 409

    # The person sees their own request and its report, never another person's (404: not visible).
    other_pid, _ = await new_person(contacts)
    assert (await contacts.http.get(f"/access-requests/{held['id']}", headers=subject(pid))).status_code == 200
    assert (await contacts.http.get(f"/access-requests/{held['id']}", headers=subject(other_pid))).status_code == 404
    async with ExternalSystem(infra.bootstrap) as services:
        await answer(services, first.json()["id"], pid)
    await fulfilled(contacts, first.json()["id"])
    own = await contacts.http.get(f"/access-requests/{first.json()['id']}/report", headers=subject(pid))
    assert own.status_code == 200 and own.json()["person_id"] == pid
    earlier = [i for i in own.json()["items"] if i["category"] == "access_request"]
    assert earlier == []  # the first request has no earlier one
    audit = await contacts.runtime.pool.fetchval(
        "SELECT actor FROM audit_log WHERE action = 'access_report.read' AND target = $1",
        f"access_request:{first.json()['id']}")
    assert audit == f"person:{pid}"


async def test_r12_a_service_that_does_not_answer_is_named_late(infra, contacts):
    """A request still waiting on a service (here one no process runs, so it never answers, whatever
    else runs in the session) says which; after the timeout, that it is late."""
    pid, _ = await new_person(contacts)
    async with contacts.runtime.pool.acquire() as conn:
        req = await storage.insert_access_request(conn, {
            "id": uuid.uuid4(), "person_id": uuid.UUID(pid), "emails": [], "phones": [], "contact_digests": [],
            "channel": "in_person", "verified_by": "owner-7", "verification_notes": None, "requested_by": "owner-7",
            "chargeable": False, "status": "collecting", "expected_services": ["contacts", "archive"]})
        await storage.store_report_part(conn, req["id"], "contacts", [])
    waiting = await status_of(contacts, req["id"])
    assert waiting["missing"] == ["archive"] and not waiting["late"]
    settings = contacts.runtime.settings
    saved, settings.contacts_access_report_timeout_s = settings.contacts_access_report_timeout_s, 0.0
    try:
        late = await status_of(contacts, req["id"])
        report = await contacts.http.get(f"/access-requests/{req['id']}/report", headers=OWNER)
    finally:
        settings.contacts_access_report_timeout_s = saved
    assert late["late"] and late["late_services"] == ["archive"]
    assert report.status_code == 409 and report.json()["fields"]["late"] == "archive"


async def test_r12_invalid_requests_and_parts_are_refused(infra, contacts):
    empty = await contacts.http.post("/access-requests", headers=OWNER,
                                     json={"verification": "signed_letter", "verified_by": "owner-7"})
    assert empty.status_code == 422 and "person_id" in empty.json()["fields"]
    bad = await contacts.http.post("/access-requests", headers=OWNER, json={
        "emails": ["not-an-email"], "verification": "phone_call", "verified_by": "owner-7"})
    assert bad.status_code == 422 and {"emails.0", "verification"} <= set(bad.json()["fields"])
    assert "not-an-email" not in bad.text  # the field and rule, never the value
    unknown = await contacts.http.post("/access-requests", headers=OWNER, json={
        "person_id": str(uuid.uuid4()), "verification": "in_person", "verified_by": "owner-7"})
    assert unknown.status_code == 404
    user = await contacts.http.post("/access-requests", headers=USER, json={
        "emails": ["x@example.fi"], "verification": "in_person", "verified_by": "user-7"})
    assert user.status_code == 403  # R12: the register owner records verified requests

    stray = uuid.uuid4()
    async with ExternalSystem(infra.bootstrap) as services:
        sent = await services.publish(AccessReportPart(request_id=stray, service="consent"), source="consent")

    async def dead_lettered():
        return await contacts.runtime.pool.fetchval(
            "SELECT reason FROM dead_letters WHERE topic = 'access-report-part' AND event_id = $1", str(sent.id))
    assert "no such access request" in await eventually(dead_lettered)


async def test_r12_request_by_contact_points_of_nobody_reaches_the_other_services(infra, contacts):
    email = f"gone.{uuid.uuid4().hex[:8]}@example.fi"
    resp = await contacts.http.post("/access-requests", headers=OWNER, json={
        "emails": [email.upper()], "verification": "signed_letter", "verified_by": "owner-7"})
    assert resp.status_code == 201, resp.text
    state = resp.json()
    assert state["person_id"] is None and state["status"] == "collecting"
    event = await asked(infra, state["id"])
    assert event["data"]["emails"] == [email] and event["data"]["person_id"] is None
    async with ExternalSystem(infra.bootstrap) as services:
        await answer(services, state["id"], None)
    await fulfilled(contacts, state["id"])
    report = (await contacts.http.get(f"/access-requests/{state['id']}/report", headers=OWNER)).json()
    assert [i for i in report["items"] if i["service"] == "contacts"] == []
    kept = await contacts.runtime.pool.fetchrow("SELECT emails, contact_digests FROM access_requests WHERE id = $1",
                                                uuid.UUID(state["id"]))
    assert kept["emails"] == [] and len(kept["contact_digests"]) == 1  # asked-about points not kept past the report


async def test_r7_r12_erasure_while_a_request_collects_leaves_an_empty_report(infra, contacts):
    """The person is erased between the request and the answers: the request completes, and
    neither contacts' slice nor any later answer keeps anything of the person."""
    pid, _ = await new_person(contacts)
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={"kind": "customer"})
    ended = await contacts.http.post(f"/relationships/{rel.json()['id']}/end", headers=USER, json={})
    assert ended.json()["lifecycle_state"] == "ended"
    state = (await contacts.http.post("/access-requests", headers=OWNER, json={
        "person_id": pid, "verification": "in_person", "verified_by": "owner-7"})).json()
    async with ExternalSystem(infra.bootstrap) as retention:
        await retention.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=uuid.UUID(pid),
                                                     action="erase", basis="R7 test"), source="retention")

        async def erased() -> bool:
            return await contacts.runtime.pool.fetchval("SELECT count(*) FROM persons WHERE id = $1",
                                                        uuid.UUID(pid)) == 0
        await eventually(erased)
        await answer(retention, state["id"], pid)
    await fulfilled(contacts, state["id"])
    report = (await contacts.http.get(f"/access-requests/{state['id']}/report", headers=OWNER)).json()
    assert report["items"] == [] and report["services"] == ["contacts", "billing", "consent", "retention"]


async def test_one_persons_access_requests_in_every_status_in_one_call(contacts):
    """Issue 19 (the owner's person page, one call instead of one per status): `person_id` with
    `status=any` lists that person's requests only, whatever their status, oldest first."""
    pid, _ = await new_person(contacts)
    other, _ = await new_person(contacts)
    first = await contacts.http.post("/me/access-requests", headers=subject(pid))
    second = await contacts.http.post("/me/access-requests", headers=subject(pid))  # chargeable: awaiting_decision
    await contacts.http.post("/me/access-requests", headers=subject(other))
    answer = await contacts.http.get("/access-requests", headers=OWNER, params={"person_id": pid, "status": "any"})
    assert answer.status_code == 200, answer.text
    assert [r["id"] for r in answer.json()["access_requests"]] == [first.json()["id"], second.json()["id"]]
    waiting = await contacts.http.get("/access-requests", headers=OWNER,
                                      params={"person_id": pid, "status": "awaiting_decision"})
    assert [r["id"] for r in waiting.json()["access_requests"]] == [second.json()["id"]]
