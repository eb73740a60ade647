"""A person's whole life in the register (issue 7), all four services in-process on the real
broker and database, retention on a simulated clock (R1-R14):

registered from a B2B register → becomes a customer contact → works on two assignments →
the relationship ends → passivated → bans distance selling → asks for their data → a year
after the last assignment, erased everywhere → imported again from the B2B register, and the
ban is still honoured.

The register here is the test's own: the four services on a broker of their own and a fresh
database (the session's PostgreSQL), so the simulated year (which commands every due disposition)
and the services' answers touch no other test, and no other test's services answer here.
"""
from __future__ import annotations

import importlib
import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from shared.web.auth import Role
from shared.messaging.events import ContactUpserted, DataSource, UsageRecorded
from shared.messaging.kafka import ensure_topics, publish_incarnation
from shared.ops.stack import EmbeddedBroker, free_port
from tests.conftest import RunningService, service_test_settings
from tests.helpers import ExternalSystem, auth, eventually, marketing_export
from tests.infra import create_database
from tests.integration.test_rights_erasure import (METER, erasure_evidence, new_customer, retention_pass, start_all,
                                                    subject, wait_state)

USER = auth(Role.register_user, user="user-e2e")
OWNER = auth(Role.register_owner, user="owner-e2e")
MARKETING = auth(Role.marketing, user="marketer-e2e")


@pytest.fixture
async def register(infra, tmp_path):
    """The four services in-process on a broker of their own and a fresh database."""
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    running: list[RunningService] = []
    try:
        await ensure_topics(broker.bootstrap)
        await publish_incarnation(broker.bootstrap)
        database_url = await create_database(infra)

        async def start(name: str, **overrides) -> RunningService:
            module = importlib.import_module(f"services.{name}.app")
            app = module.build_app(module.SETTINGS(**service_test_settings(
                infra, database_url, kafka_bootstrap_servers=broker.bootstrap, **overrides)))
            await app.state.runtime.start()
            running.append(RunningService(name, app, app.state.runtime, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")))
            return running[-1]

        yield {**await start_all(start), "bootstrap": broker.bootstrap}
    finally:
        for service in reversed(running):
            await service.stop()
        broker.stop()


def b2b_row(ref: str, email: str) -> ContactUpserted:
    return ContactUpserted(external_ref=ref, source=DataSource.b2b_register, first_name="Liisa", last_name="Elinkaari",
                           title="CTO", emails=[email], phones=["+358 50 765 4321"],
                           organisation_business_id="2192407-7", organisation_name="Elinkaari Oy")


async def person_by_ref(contacts, ref: str):
    return await contacts.runtime.pool.fetchrow("SELECT id, lifecycle_state FROM persons WHERE external_ref = $1", ref)


async def exported(contacts, purpose: str) -> set[uuid.UUID]:
    return {uuid.UUID(p["id"]) for p in await marketing_export(contacts.http, MARKETING, purpose=purpose)}


async def consent_allows(consent, purpose: str, **target) -> bool:
    resp = await consent.http.post("/checks", headers=MARKETING,
                                   json={"purpose": purpose, "channel": "phone", **{k: str(v) for k, v in target.items()}})
    assert resp.status_code == 200, resp.text
    return resp.json()["allowed"]


@pytest.mark.slow
async def test_lifecycle_b2b_import_to_erasure_and_the_ban_outlives_it(register):
    contacts, consent, retention, billing = (register[n] for n in ("contacts", "consent", "retention", "billing"))
    bootstrap = register["bootstrap"]
    t0 = retention.runtime.clock.now()
    ref, email = f"b2b-{uuid.uuid4()}", f"liisa.{uuid.uuid4().hex[:8]}@elinkaari.fi"

    # 1. Registered from a B2B register (R4): a prospect, every field remembering its source.
    async with ExternalSystem(bootstrap) as b2b:
        await b2b.publish(b2b_row(ref, email), source="b2b-register")
    person = await eventually(lambda: person_by_ref(contacts, ref))
    pid = str(person["id"])
    assert person["lifecycle_state"] == "prospect"

    # 2. Becomes a customer contact (R2, R5), then works on two assignments (P2); usage is billed (P3).
    rel = await contacts.http.post(f"/persons/{pid}/relationships", headers=USER, json={
        "kind": "customer", "started_at": (t0 - timedelta(days=400)).isoformat()})
    assert rel.json()["lifecycle_state"] == "active"
    assignments = []
    for title, start, end in (("Pilvisiirto", 300, 200), ("Tukipalvelu", 150, 30)):
        made = await contacts.http.post("/assignments", headers=USER, json={
            "given_by": "customer", "title": title, "participants": [pid],
            "started_at": (t0 - timedelta(days=start)).isoformat()})
        assert made.status_code == 201, made.text
        assignments.append((made.json()["id"], t0 - timedelta(days=end)))
    customer = await new_customer(billing)
    async with ExternalSystem(bootstrap) as platform:
        await platform.publish(UsageRecorded(customer_id=customer, person_id=person["id"], meter=METER,
                                             quantity=Decimal("12.5"), time=t0 - timedelta(days=60)),
                               source="cloud-e2e")

    async def usage_billed() -> bool:  # billing's own consumer group joins on its own schedule
        return await billing.runtime.pool.fetchval(
            "SELECT count(*) FROM usage_persons WHERE person_id = $1", person["id"]) > 0
    await eventually(usage_billed)
    for assignment_id, ended_at in assignments:
        done = await contacts.http.post(f"/assignments/{assignment_id}/end", headers=USER,
                                        json={"ended_at": ended_at.isoformat()})
        assert done.status_code == 200, done.text
    last_assignment_end = assignments[-1][1]

    # 3. The relationship ends (R5, R6): retention times passivation and the final disposition.
    ended = await contacts.http.post(f"/relationships/{rel.json()['id']}/end", headers=USER,
                                     json={"ended_at": t0.isoformat()})
    assert ended.json()["lifecycle_state"] == "ended"

    async def deadlines():
        rows = await retention.runtime.pool.fetch(
            "SELECT action, due_at FROM deadlines WHERE person_id = $1 AND status = 'pending'", person["id"])
        found = {r["action"]: r["due_at"] for r in rows}
        return found if {"passivate", "dispose"} <= set(found) else None
    due = await eventually(deadlines)
    # R7: at the latest one year after the end of the last assignment (or the relationship, if later).
    assert due["dispose"] <= max(last_assignment_end, t0) + timedelta(days=365)

    # 4. Passivated (R6): only the register owner reads the person now; the person still reads their own data.
    await retention_pass(retention, t0 + timedelta(days=1))
    await wait_state(contacts, pid, "passive")
    assert (await contacts.http.get(f"/persons/{pid}", headers=USER)).status_code == 403
    assert (await contacts.http.get(f"/persons/{pid}", headers=OWNER)).status_code == 200
    assert (await contacts.http.get("/me", headers=subject(pid))).status_code == 200

    # 5. Bans distance selling (R13) through consent's self-service; contacts' export hears of it.
    ban = await consent.http.post("/me/consents", headers=subject(pid), json={
        "purpose": "distance_selling", "channel": "phone", "decision": "ban", "method": "self_service_form"})
    assert ban.json()["status"] == "banned"
    assert not await consent_allows(consent, "distance_selling", person_id=pid)

    async def email_suppressed() -> bool:  # R8: consent keeps the banned address too
        return not await consent_allows(consent, "distance_selling", email=email)
    await eventually(email_suppressed)

    async def contacts_banned() -> bool:
        return "distance_selling" in [r["purpose"] for r in await contacts.runtime.pool.fetch(
            "SELECT purpose FROM marketing_bans WHERE person_id = $1", person["id"])]
    await eventually(contacts_banned)

    # 6. Asks for their data (R12): one report from the four services, every item with source and purpose.
    asked = await contacts.http.post("/me/access-requests", headers=subject(pid))
    assert asked.status_code == 201 and not asked.json()["chargeable"]
    request_id = asked.json()["id"]

    async def report_ready():
        resp = await contacts.http.get(f"/access-requests/{request_id}/report", headers=subject(pid))
        return resp.json() if resp.status_code == 200 else None
    report = await eventually(report_ready)
    assert {i["service"] for i in report["items"]} == {"contacts", "consent", "retention", "billing"}
    assert all(i["source"] and i["purpose"] for i in report["items"])
    contacts_items = {(i["category"], i["field"]): i for i in report["items"] if i["service"] == "contacts"}
    assert contacts_items[("basic_data", "emails")]["source"] == "b2b_register"  # R4
    assert contacts_items[("registration", "lifecycle_state")]["value"] == "passive"
    assert len([i for i in report["items"] if i["category"] == "assignment"]) == 2
    assert any(i["service"] == "consent" and i["purpose"] == "distance_selling" and i["value"] == "banned"
               for i in report["items"])
    html = await contacts.http.get(f"/access-requests/{request_id}/report?format=html&lang=fi", headers=subject(pid))
    assert "Elinkaari" in html.text and "B2B-markkinointirekisteri" in html.text

    # 7. A year after the last assignment (R7): erased everywhere, each service confirms (a ban: no transfer).
    await retention_pass(retention, max(last_assignment_end, t0) + timedelta(days=365, minutes=1))
    await wait_state(contacts, pid, None)
    evidence = await eventually(lambda: erasure_evidence(retention, pid))
    assert set(evidence["confirmations"]) == {"contacts", "consent", "billing", "retention"}
    assert await consent.runtime.pool.fetchval("SELECT count(*) FROM consent_state WHERE person_id = $1",
                                               person["id"]) == 0
    assert await billing.runtime.pool.fetchval("SELECT count(*) FROM usage_persons WHERE person_id = $1",
                                               person["id"]) == 0
    assert await contacts.runtime.pool.fetchval(
        "SELECT sum(jsonb_array_length(items)) FROM access_report_parts WHERE request_id = $1",
        uuid.UUID(request_id)) == 0  # the report went with the person

    # 8. The same row imported again from the B2B register (R4, R8): a new person, banned at once.
    async with ExternalSystem(bootstrap) as b2b:
        await b2b.publish(b2b_row(ref, email), source="b2b-register")
    again = await eventually(lambda: person_by_ref(contacts, ref))
    assert again["id"] != person["id"]
    assert again["id"] not in await exported(contacts, "distance_selling")
    assert again["id"] in await exported(contacts, "direct_advertising")  # only the banned purpose
    assert not await consent_allows(consent, "distance_selling", email=email)

    async def consent_bans_new_person() -> bool:
        return not await consent_allows(consent, "distance_selling", person_id=again["id"])
    await eventually(consent_bans_new_person)
