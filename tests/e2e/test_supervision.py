"""`rekisteri up` supervises every component (SPEC §7, §8; issue 20): the embedded broker and,
separately, PostgreSQL are SIGKILLed under it, and with no manual step

- the launcher logs `component_died_restarting` (component, exit code, attempt) and starts
  the component again after its back-off;
- while it is away, `/readyz` answers 503 naming the missing dependency;
- afterwards every service's `/readyz` answers 200 again;
- every effect happened exactly once: a person registered before the kills and one after
  each reach consent and retention once (the outbox replay after the broker restart is
  deduplicated by the inboxes), each consent decision is one history row, usage sent again
  by a retrying sender is billed once, nothing is dead-lettered, no personal value in a log.

Inputs arrive through the durable HTTP accept (`POST /events/{topic}`), as SPEC §8 asks of
other systems on the embedded stack; the services talk to each other over the broker.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shared.messaging import events as ev
from shared.ops.stack import free_port
from shared.runtime import READINESS_CHECK_TIMEOUT_S
from shared.settings import SERVICE_NAMES
from tests.e2e.processes import OutputReader, alive, child_running, descendants
from tests.helpers import auth, envelope_for, eventually, scaled

pytestmark = pytest.mark.slow
METER = "supervised_calls"
BACKOFF_S = 8  # the first restart's delay: long enough to see /readyz name what is missing, even on a busy machine


class Register:
    """A `rekisteri up` run, driven from outside over HTTP and read back from its database."""

    def __init__(self, proc: subprocess.Popen[str], output: OutputReader, env: dict[str, str],
                 data_dir: Path) -> None:
        self.proc, self.output, self.env, self.data_dir = proc, output, env, data_dir
        self.url = {name: f"http://127.0.0.1:{env[f'{name.upper()}_PORT']}" for name in SERVICE_NAMES}
        self.database_url = env["DATABASE_URL"]
        self.client = httpx.AsyncClient(timeout=15)
        self.customer = uuid.uuid4()
        self.persons: dict[str, dict[str, Any]] = {}  # label -> what was sent for that person
        self.usage_batches: list[list[dict[str, Any]]] = []

    async def send(self, method: str, service: str, path: str, body: Any, role: str = "service") -> httpx.Response:
        """As a sender must: retry the same content until a success (the register may be restarting)."""
        async def succeeded() -> httpx.Response | None:
            try:
                response = await self.client.request(method, f"{self.url[service]}{path}", json=body,
                                                     headers=auth(role, user="supervision-test"))
            except httpx.TransportError:
                return None
            assert response.status_code < 300 or response.status_code >= 500, response.text[:300]
            return response if response.status_code < 300 else None
        return await eventually(succeeded, timeout=60, interval=0.3)

    async def readiness(self) -> dict[str, tuple[int, dict[str, bool]]]:
        """Every service's /readyz, asked at once with a short timeout: one slow answer on a
        busy machine must not use up the back-off window in which the dependency is missing.
        The timeout outlasts the service's own bound on its checks: with the broker gone the
        answer takes that whole bound, and a shorter wait never saw it."""
        async def ask(url: str) -> tuple[int, dict[str, bool]]:
            try:
                response = await self.client.get(f"{url}/readyz", timeout=READINESS_CHECK_TIMEOUT_S + scaled(2))
                return response.status_code, response.json().get("checks", {})
            except (httpx.TransportError, ValueError):
                return 0, {}
        answers = await asyncio.gather(*(ask(url) for url in self.url.values()))
        return dict(zip(self.url, answers))

    async def all_ready(self) -> bool:
        return all(code == 200 for code, _ in (await self.readiness()).values())

    async def register_person(self, label: str) -> None:
        """A person from CRM, a customer relationship, a consent decision, ten usage events."""
        ref = f"supervised-{label}-{uuid.uuid4().hex[:8]}"
        email = f"supervised.{label}.{uuid.uuid4().hex[:6]}@example.fi"
        last_name = f"Lastname{uuid.uuid4().hex[:8]}"
        upsert = envelope_for(ev.ContactUpserted(external_ref=ref, source=ev.DataSource.b2b_register,
                                                 first_name="Supervised", last_name=last_name,
                                                 emails=[email]), source="supervision-crm")[2]
        await self.send("POST", "contacts", "/events/contact-upserted", {"events": [upsert.model_dump(mode="json")]})
        db = await asyncpg.connect(self.database_url)
        try:
            person_id = await eventually(lambda: db.fetchval("SELECT id FROM contacts.persons WHERE external_ref = $1",
                                                             ref), timeout=60, interval=0.2)
        finally:
            await db.close()
        relationship = uuid.uuid4()
        started = envelope_for(ev.RelationshipStarted(person_id=person_id, relationship_id=relationship,
                                                      kind="customer", started_at=datetime.now(UTC)),
                               source="supervision-crm")[2].model_dump(mode="json")
        for service in ("contacts", "retention"):
            await self.send("POST", service, "/events/relationship-started", {"events": [started]})
        await self.send("POST", "consent", f"/persons/{person_id}/consents",
                        {"purpose": "direct_advertising", "channel": "email", "decision": "grant", "method": "phone"},
                        role="register_user")
        usage = [envelope_for(ev.UsageRecorded(customer_id=self.customer, meter=METER, quantity=Decimal("1.5"),
                                               time=datetime.now(UTC) - timedelta(minutes=1)),
                              source="supervision-platform")[2].model_dump(mode="json") for _ in range(10)]
        await self.send("POST", "billing", "/events/usage-recorded", {"events": usage})
        self.usage_batches.append(usage)
        self.persons[label] = {"id": person_id, "email": email, "last_name": last_name}

    async def disagreements(self) -> list[str]:
        """What differs from "every effect exactly once" (empty when all agree)."""
        wrong: list[str] = []
        db = await asyncpg.connect(self.database_url)
        try:
            for label, person in self.persons.items():
                pid = person["id"]
                counts = {
                    "contacts persons": await db.fetchval("SELECT count(*) FROM contacts.persons WHERE id = $1", pid),
                    "contacts relationships": await db.fetchval(
                        "SELECT count(*) FROM contacts.relationships WHERE person_id = $1", pid),
                    "consent contact points": await db.fetchval(
                        "SELECT count(*) FROM consent.contact_point WHERE person_id = $1", pid),
                    "consent history": await db.fetchval(
                        "SELECT count(*) FROM consent.consent_history WHERE person_id = $1", pid),
                    "retention persons": await db.fetchval(
                        "SELECT count(*) FROM retention.persons WHERE person_id = $1", pid),
                    "retention relationships": await db.fetchval(
                        "SELECT count(*) FROM retention.relationships WHERE person_id = $1", pid),
                    "retention permissions": await db.fetchval(
                        "SELECT count(*) FROM retention.marketing_permissions WHERE person_id = $1", pid),
                }
                wrong += [f"{label}: {what} = {n}, expected 1" for what, n in counts.items() if n != 1]
            billed = await db.fetchrow("SELECT coalesce(sum(event_count), 0) AS n, coalesce(sum(quantity_sum), 0) AS q"
                                       " FROM billing.usage_aggregates WHERE customer_id = $1", self.customer)
            expected = 10 * len(self.usage_batches)
            if (billed["n"], billed["q"]) != (expected, Decimal("1.5") * expected):
                wrong.append(f"billing: {billed['n']} events / {billed['q']} billed, expected {expected} events")
            for name in SERVICE_NAMES:
                wrong += [f"{name}: dead letter on {r['topic']}: {r['reason'][:200]}"
                          for r in await db.fetch(f"SELECT topic, reason FROM {name}.dead_letters")]
        finally:
            await db.close()
        return wrong

    def logs(self) -> str:
        return self.output.text() + "\n".join(p.read_text(errors="replace") for p in self.data_dir.glob("*.log"))


async def kill_and_watch_recovery(register: Register, component: str, marker: str, dependency: str) -> None:
    """SIGKILL `component` (the `up` process's child whose command line has `marker`), see
    /readyz name `dependency` as missing, the launcher log the death, and every service
    ready again."""
    pid = child_running(register.proc.pid, marker)
    assert pid is not None, f"no {component} process under rekisteri up"
    os.kill(pid, signal.SIGKILL)

    async def names_missing() -> bool:
        return any(code == 503 and checks.get(dependency) is False for code, checks in (await register.readiness()).values())
    await eventually(names_missing, timeout=BACKOFF_S, interval=0.2)

    def logged() -> bool:
        return any("component_died_restarting" in line and f'"component": "{component}"' in line
                   and '"exit_code": -9' in line and '"attempt": 1' in line for line in register.output.lines)
    await eventually(logged, timeout=10)
    await eventually(register.all_ready, timeout=90, interval=0.3)
    assert child_running(register.proc.pid, marker) not in (None, pid), f"{component} was not started again"


@pytest.fixture
async def register(private_tmp: Path):
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = dict(os.environ)
    env.update({
        "REKISTERI_DATA_DIR": str(private_tmp / "data"),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "OUTBOX_POLL_INTERVAL_S": "0.1",
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1",
        "BILLING_AUTO_CLOSE": "false",
        "REKISTERI_RESTART_BACKOFF_FIRST_S": str(BACKOFF_S),
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    })
    proc = subprocess.Popen([sys.executable, "-m", "shared.ops.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = OutputReader(proc.stdout)
    running = Register(proc, output, env, private_tmp / "data")
    try:
        await eventually(lambda: "READY" in output.lines or proc.poll() is not None, timeout=120, interval=0.2)
        assert "READY" in output.lines, output.text()[-3000:]
        yield running
    finally:
        await running.client.aclose()
        tree = descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=scaled(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)


async def test_broker_and_postgresql_killed_under_up_come_back_by_themselves_and_every_effect_happens_once(register):
    await register.send("PUT", "billing", f"/billing/meters/{METER}", {"aggregation": "sum"}, role="billing")
    await register.send("PUT", "billing", f"/billing/customers/{register.customer}/plan",
                        {"components": [{"meter": METER, "model": "per_unit", "unit_price": "0.10"}]}, role="billing")
    await register.register_person("before")

    async def agree() -> list[str] | bool:
        return not await register.disagreements()

    await eventually(agree, timeout=60, interval=0.5)

    started = time.monotonic()
    await kill_and_watch_recovery(register, "broker", "broker --listener-url", "broker")
    broker_recovery_s = time.monotonic() - started
    # The empty broker got a new incarnation marker: each service replayed its outbox.
    def not_replayed() -> list[str]:
        return [name for name in SERVICE_NAMES
                if "broker_restarted_replaying_outbox" not in (register.data_dir / f"{name}.log").read_text()]

    try:
        await eventually(lambda: not not_replayed(), timeout=60)
    except AssertionError:
        pytest.fail(f"no outbox replay after the broker restart in: {not_replayed()}")
    await register.send("POST", "billing", "/events/usage-recorded", {"events": register.usage_batches[0]})  # a retry
    await register.register_person("after-broker")

    started = time.monotonic()
    await kill_and_watch_recovery(register, "postgres", " -D ", "database")
    postgres_recovery_s = time.monotonic() - started
    await register.register_person("after-postgres")

    wrong: list[str] = []

    async def converged() -> bool:
        wrong[:] = await register.disagreements()
        return not wrong

    try:
        await eventually(converged, timeout=60, interval=0.5)
    except AssertionError:
        pytest.fail("after the kills the register disagrees with what was sent:\n" + "\n".join(wrong))
    assert await register.all_ready()
    logs = register.logs()
    for person in register.persons.values():  # no personal value in any log (R10)
        assert person["email"] not in logs and person["last_name"] not in logs
    print(f"recovered: broker in {broker_recovery_s:.1f} s, PostgreSQL in {postgres_recovery_s:.1f} s"
          f" (first back-off {BACKOFF_S} s)")
