"""Faults on the real processes (issue 9, SPEC §8): services SIGKILLed mid-stream, PostgreSQL
restarted mid-stream. Nothing sent may be lost and nothing applied twice.

The stack is `shared.ops.launcher.Stack`: PostgreSQL, the broker, the topics and the four services
as subprocesses, with its `supervise()` loop restarting any component that dies. Events arrive the two
ways other systems send them: on the topics, and through the durable HTTP accept
(`POST /events/{topic}`, service token; a sender retries until it gets a 202, with the same
event ids). Changes also come through the services' own APIs (consent decisions).
"""
from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from shared.messaging import events as ev
from shared.ops.launcher import Stack
from shared.settings import SERVICE_NAMES, PlatformSettings
from shared.ops.stack import free_port
from tests.helpers import ExternalSystem, auth, envelope_for, eventually
from tests.infra import private_dir

pytestmark = pytest.mark.slow
SOURCE = "fault-crm"
METER = "fault_cpu_hours"


class FaultStack(Stack):
    """The embedded stack with a quick relay, argon2 at its cheapest (R3's cost is not under test),
    no automatic period close and no passivation within the test (the expected states are exact)."""

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update(OUTBOX_POLL_INTERVAL_S="0.1", LOG_LEVEL="WARNING", ARGON2_TIME_COST="1",
                   ARGON2_MEMORY_KIB="1024", ARGON2_PARALLELISM="1", CONSUMER_MAX_ATTEMPTS="5",
                   BILLING_AUTO_CLOSE="false",
                   # Ended persons stay `ended` (no passivation during the test): states are exact.
                   RETENTION_GRACE_DAYS="30")
        return env


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[FaultStack]:
    ports = {f"{name}_port": free_port() for name in SERVICE_NAMES}
    settings = PlatformSettings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
                                kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", **ports)
    with private_dir("faults") as root:
        running = FaultStack(settings, root=root, durable=False)
        stop = asyncio.Event()
        supervisor: asyncio.Task[None] | None = None
        try:
            await running.start_infrastructure()
            await running.start_services(timeout=120)
            supervisor = asyncio.create_task(running.supervise(stop))
            yield running
        finally:
            stop.set()
            if supervisor is not None:
                await supervisor
            running.stop()


async def deliver(client: httpx.AsyncClient, method: str, url: str, body: Any = None, *, role: str = "service",
                  timeout: float = 90.0) -> httpx.Response:
    """Send until the service answers with a success; a dead or restarting service (connection
    refused, cut mid-request, 5xx) is retried with the same content, as a sender must."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            response = await client.request(method, url, json=body, headers=auth(role, user="fault-sender"))
            if response.status_code < 300:
                return response
            assert response.status_code >= 500, f"{method} {url}: {response.status_code} {response.text[:300]}"
        except httpx.TransportError:
            pass
        assert asyncio.get_running_loop().time() < deadline, f"{method} {url}: no success within {timeout} s"
        await asyncio.sleep(0.2)


def as_json(envelope: Any) -> dict[str, Any]:
    return json.loads(envelope.model_dump_json())


class Scenario:
    """What is sent, and so what every service must end up with."""

    def __init__(self, persons: int = 24, customers: int = 3, usage_events: int = 480) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.refs = [f"fault-{self.run}-{i}" for i in range(persons)]
        self.customers = [uuid.uuid4() for _ in range(customers)]
        rng = random.Random(self.run)
        self.when = datetime.now(UTC) - timedelta(minutes=10)
        self.usage = [ev.UsageRecorded(customer_id=rng.choice(self.customers), meter=METER,
                                       quantity=Decimal(rng.randint(1, 400)) / 100, time=self.when)
                      for _ in range(usage_events)]
        self.person_ids: dict[str, uuid.UUID] = {}
        self.relationships: dict[uuid.UUID, uuid.UUID] = {}

    def upserts(self) -> list[Any]:
        return [envelope_for(ev.ContactUpserted(external_ref=ref, source=ev.DataSource.b2b_register,
                                                first_name="Fault", last_name=f"Person{i}",
                                                emails=[f"fault{i}.{self.run}@example.fi"]), source=SOURCE)[2]
                for i, ref in enumerate(self.refs)]

    def ended(self, ref: str) -> bool:
        return self.refs.index(ref) % 3 == 0

    def decision(self, ref: str) -> str:
        return "grant" if self.refs.index(ref) % 2 == 0 else "ban"

    def usage_totals(self) -> dict[uuid.UUID, tuple[Decimal, int]]:
        totals: dict[uuid.UUID, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
        for u in self.usage:
            totals[u.customer_id][0] += u.quantity
            totals[u.customer_id][1] += 1
        return {c: (q, n) for c, (q, n) in totals.items()}


async def kill_in_turn(stack: FaultStack, rounds: int, pause_s: float, stop: asyncio.Event) -> int:
    """SIGKILL each service in turn, `rounds` times, while the stream flows."""
    kills = 0
    for _ in range(rounds):
        for process in stack.services:
            if stop.is_set():
                return kills
            if process.alive():
                process.proc.kill()  # SIGKILL: no graceful shutdown, transactions cut where they are
                kills += 1
            await asyncio.sleep(pause_s)
    return kills


async def send_half_http_half_kafka(client: httpx.AsyncClient, kafka: ExternalSystem, url_of: dict[str, str],
                                    topic: str, services: list[str], envelopes: list[Any], batch: int,
                                    pace_s: float) -> None:
    for start in range(0, len(envelopes), batch):
        chunk = envelopes[start:start + batch]
        if (start // batch) % 2 == 0:
            for service in services:  # the durable accept is per consuming service
                await deliver(client, "POST", f"{url_of[service]}/events/{topic}", {"events": [as_json(e) for e in chunk]})
        else:
            for envelope in chunk:
                await kafka.publish_envelope(topic, envelope)
        await asyncio.sleep(pace_s)


async def setup_billing(client: httpx.AsyncClient, url: str, scenario: Scenario) -> None:
    await deliver(client, "PUT", f"{url}/billing/meters/{METER}", {"aggregation": "sum", "unit": "h"}, role="billing")
    for customer in scenario.customers:
        await deliver(client, "PUT", f"{url}/billing/customers/{customer}/plan",
                      {"components": [{"meter": METER, "model": "per_unit", "unit_price": "0.10"}]}, role="billing")


async def run_stream(stack: FaultStack, scenario: Scenario, client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    url = stack.endpoints()
    async with ExternalSystem(stack.settings.kafka_bootstrap_servers) as kafka:
        usage = [envelope_for(u, source="fault-platform")[2] for u in scenario.usage]
        usage_task = asyncio.create_task(send_half_http_half_kafka(
            client, kafka, url, "usage-recorded", ["billing"], usage, batch=20, pace_s=0.8))
        await send_half_http_half_kafka(client, kafka, url, "contact-upserted", ["contacts"], scenario.upserts(),
                                        batch=4, pace_s=0.5)

        async def registered() -> bool:
            rows = await db.fetch("SELECT external_ref, id FROM contacts.persons WHERE external_ref = ANY($1)",
                                  scenario.refs)
            scenario.person_ids = {r["external_ref"]: r["id"] for r in rows}
            return len(rows) == len(scenario.refs)

        await eventually(registered, timeout=90, interval=0.3)
        started, ended = [], []
        for ref, person_id in scenario.person_ids.items():
            rel = scenario.relationships[person_id] = uuid.uuid4()
            started.append(envelope_for(ev.RelationshipStarted(
                person_id=person_id, relationship_id=rel, kind="customer", started_at=scenario.when), source=SOURCE)[2])
            if scenario.ended(ref):
                ended.append(envelope_for(ev.RelationshipEnded(
                    person_id=person_id, relationship_id=rel, ended_at=scenario.when + timedelta(minutes=1)),
                    source=SOURCE)[2])
        both = ["contacts", "retention"]
        await send_half_http_half_kafka(client, kafka, url, "relationship-started", both, started, batch=4, pace_s=0.3)
        for ref, person_id in scenario.person_ids.items():  # the consent service's own API, retried as a client would
            await deliver(client, "POST", f"{url['consent']}/persons/{person_id}/consents",
                          {"purpose": "direct_advertising", "channel": "email", "decision": scenario.decision(ref),
                           "method": "phone"}, role="register_user")
        await eventually(lambda: db.fetchval(
            "SELECT count(*) = $2 FROM contacts.relationships WHERE id = ANY($1)",
            list(scenario.relationships.values()), len(scenario.relationships)), timeout=90, interval=0.3)
        await send_half_http_half_kafka(client, kafka, url, "relationship-ended", both, ended, batch=4, pace_s=0.3)
        await usage_task


async def converged(db: asyncpg.Connection, scenario: Scenario) -> list[str]:
    """What differs between what was sent and what the services hold (empty when they agree)."""
    wrong: list[str] = []
    persons = await db.fetch("SELECT external_ref, lifecycle_state FROM contacts.persons WHERE external_ref = ANY($1)",
                             scenario.refs)
    if len(persons) != len(scenario.refs):
        wrong.append(f"contacts: {len(persons)} persons for {len(scenario.refs)} sent")
    for p in persons:
        expected = "ended" if scenario.ended(p["external_ref"]) else "active"
        if p["lifecycle_state"] != expected:
            wrong.append(f"contacts: {p['external_ref']} is {p['lifecycle_state']}, expected {expected}")
    ids = list(scenario.person_ids.values())
    for schema in ("contacts", "retention"):
        id_column = "id" if schema == "contacts" else "relationship_id"
        rels = await db.fetch(f"SELECT person_id, ended_at IS NOT NULL AS ended FROM {schema}.relationships"
                              f" WHERE {id_column} = ANY($1)", list(scenario.relationships.values()))
        by_person = defaultdict(list)
        for r in rels:
            by_person[r["person_id"]].append(r["ended"])
        for ref, pid in scenario.person_ids.items():
            if by_person.get(pid) != [scenario.ended(ref)]:
                wrong.append(f"{schema}: relationships of {ref}: {by_person.get(pid)}")
    states = await db.fetch("SELECT person_id, status FROM consent.consent_state WHERE person_id = ANY($1)"
                            " AND purpose = 'direct_advertising' AND channel = 'email'", ids)
    status_of = {r["person_id"]: r["status"] for r in states}
    for ref, pid in scenario.person_ids.items():
        expected = "granted" if scenario.decision(ref) == "grant" else "banned"
        if status_of.get(pid) != expected:
            wrong.append(f"consent: {ref} is {status_of.get(pid)}, expected {expected}")
    history = await db.fetch("SELECT person_id, count(*) AS n FROM consent.consent_history WHERE person_id = ANY($1)"
                             " AND purpose = 'direct_advertising' AND channel = 'email' GROUP BY person_id", ids)
    wrong += [f"consent: {h['n']} history rows for one decision of {h['person_id']}" for h in history if h["n"] != 1]
    usage = await db.fetch("SELECT customer_id, sum(quantity_sum) AS q, sum(event_count) AS n"
                           " FROM billing.usage_aggregates WHERE customer_id = ANY($1) AND meter = $2"
                           " GROUP BY customer_id", scenario.customers, METER)
    got = {r["customer_id"]: (r["q"], int(r["n"])) for r in usage}
    if got != scenario.usage_totals():
        wrong.append(f"billing: usage {got} != sent {scenario.usage_totals()}")
    for name in SERVICE_NAMES:  # a good event cut by a kill or an outage is retried, never dead-lettered
        wrong += [f"{name}: dead letter on {r['topic']}: {r['reason'][:300]}"
                  for r in await db.fetch(f"SELECT topic, reason FROM {name}.dead_letters")]
    return wrong


async def test_services_killed_repeatedly_lose_nothing_and_count_nothing_twice(stack):
    """SPEC §8: SIGKILL each service twice while persons, relationships, consent decisions and
    usage stream in; afterwards every service agrees exactly with what was sent (R5, R13, P3)."""
    scenario = Scenario()
    db = await asyncpg.connect(stack.settings.database_url)
    stop_killing = asyncio.Event()
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            await setup_billing(client, stack.endpoints()["billing"], scenario)
            killer = asyncio.create_task(kill_in_turn(stack, rounds=2, pause_s=2.5, stop=stop_killing))
            await run_stream(stack, scenario, client, db)
            kills = await killer
            await stack.wait_ready(timeout=90)
            wrong: list[str] = []

            async def agree() -> bool:
                wrong[:] = await converged(db, scenario)
                return not wrong

            try:
                await eventually(agree, timeout=90, interval=0.5)
            except AssertionError:
                pytest.fail("after the kills the services disagree with what was sent:\n" + "\n".join(wrong[:30]))
            # The usage report a customer gets says the same (P3).
            customer, (quantity, count) = next(iter(scenario.usage_totals().items()))
            period = scenario.when.astimezone(ZoneInfo("Europe/Helsinki")).strftime("%Y-%m")
            report = await deliver(client, "GET", f"{stack.endpoints()['billing']}/billing/customers/{customer}/usage"
                                   f"?period={period}", role="billing")
            line = [u for u in report.json()["usage"] if u["meter"] == METER]
            assert Decimal(line[0]["quantity"]) == quantity and line[0]["events"] == count
    finally:
        stop_killing.set()
        await db.close()
    assert kills == 2 * len(SERVICE_NAMES)
    assert all(p.restarts >= 2 for p in stack.services), {p.name: p.restarts for p in stack.services}


def log_mark(stack: FaultStack, service: str) -> int:
    path = stack.root / f"{service}.log"
    return path.stat().st_size if path.exists() else 0


def logged_since(stack: FaultStack, service: str, mark: int, *needles: str) -> bool:
    """Has `service` written a log line with all of `needles` after byte `mark` of its log?"""
    with open(stack.root / f"{service}.log", "rb") as log:
        log.seek(mark)
        return any(all(n in line for n in needles) for line in log.read().decode(errors="replace").splitlines())


async def database_outage(stack: FaultStack, client: httpx.AsyncClient, url: dict[str, str], http_batch: list[Any],
                          kafka_events: list[Any], upserts: list[Any]) -> None:
    """While PostgreSQL is down: not ready, 5xx answers, and events on the topics wait."""
    for base in url.values():
        async def not_ready(base: str = base) -> bool:
            response = await client.get(f"{base}/readyz")
            return response.status_code == 503 and response.json()["checks"]["database"] is False
        await eventually(not_ready, timeout=20, interval=0.2)
    refused = await client.post(f"{url['billing']}/events/usage-recorded", json={"events": http_batch},
                                headers=auth("service"))
    assert refused.status_code >= 500  # never a 202 that the database did not commit
    for service, path, role in (("contacts", f"/persons/{uuid.uuid4()}", "register_user"),
                                ("consent", f"/persons/{uuid.uuid4()}/consents", "register_user"),
                                ("retention", "/reports/summary", "register_owner"),
                                ("billing", "/billing/meters", "billing")):
        answer = await client.get(f"{url[service]}{path}", headers=auth(role))  # answers, does not hang
        assert answer.status_code >= 500 and answer.json()["error"], (service, answer.status_code)
    marks = {name: log_mark(stack, name) for name in ("billing", "contacts")}
    async with ExternalSystem(stack.settings.kafka_bootstrap_servers) as kafka:
        for envelope in kafka_events:  # consumed while the database is away: must wait, not dead-letter
            await kafka.publish_envelope("usage-recorded", envelope)
        for upsert in upserts:
            await kafka.publish_envelope("contact-upserted", upsert)
    # Both consumers took their events and are waiting for the database (not dead-lettering them).
    for service, topic in (("billing", "usage-recorded"), ("contacts", "contact-upserted")):
        await eventually(lambda service=service, topic=topic: logged_since(
            stack, service, marks[service], "consumer_waiting_for_database", f'"topic": "{topic}"'), timeout=30)


async def test_postgresql_restart_mid_stream_services_wait_then_carry_on(stack):
    """SPEC §7/§8: with the database gone, /readyz says not ready and the durable accept gives
    5xx (no false 202); consumers wait; when it is back, everything sent is applied once."""
    await stack.wait_ready(timeout=90)
    url = stack.endpoints()
    customer = uuid.uuid4()
    scenario = Scenario(persons=0, customers=1, usage_events=0)
    scenario.customers = [customer]
    when = datetime.now(UTC) - timedelta(minutes=5)
    usage = [ev.UsageRecorded(customer_id=customer, meter=METER, quantity=Decimal("1.25"), time=when)
             for _ in range(60)]
    scenario.usage = usage
    http_batch = [as_json(envelope_for(u, source="pg-platform")[2]) for u in usage[:30]]
    kafka_events = [envelope_for(u, source="pg-platform")[2] for u in usage[30:]]
    outage = Scenario(persons=5, customers=1, usage_events=0)
    upserts = outage.upserts()
    async with httpx.AsyncClient(timeout=15) as client:
        await setup_billing(client, url["billing"], scenario)
        with stack.paused("postgres"):  # an outage of our making: the supervisor must not end it early
            stack.postgres.stop()
            try:
                await database_outage(stack, client, url, http_batch, kafka_events, upserts)
            finally:
                stack.postgres.start()
        await stack.wait_ready(timeout=90)
        accepted = await deliver(client, "POST", f"{url['billing']}/events/usage-recorded", {"events": http_batch})
        assert accepted.json()["rejected"] == []
    db = await asyncpg.connect(stack.settings.database_url)
    try:
        await eventually(lambda: db.fetchval(
            "SELECT sum(event_count) = 60 FROM billing.usage_aggregates WHERE customer_id = $1", customer), timeout=60)
        await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM contacts.persons WHERE external_ref = ANY($1)",
                                             outage.refs), timeout=60)
        assert await db.fetchval("SELECT count(*) FROM contacts.persons WHERE external_ref = ANY($1)"
                                 " AND lifecycle_state = 'prospect'", outage.refs) == 5
        assert await converged(db, scenario) == []  # usage exactly once, and nothing dead-lettered
    finally:
        await db.close()
