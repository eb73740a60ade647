"""The chaos soak (`make soak`, issue 20): mixed traffic across the four services under
`rekisteri up` while a chaos driver SIGKILLs a random component (a service, the broker or
PostgreSQL) every 20–60 s. At the end it lets the register settle and checks invariants:

- every usage event the billing accept acknowledged (202) is billed exactly once;
- every ban is effective (consent's state says banned; a check by person and by email says no);
- every person is in the lifecycle state that was sent, in contacts and in retention alike;
- nothing is dead-lettered but the bad events the soak injected, and each of those is;
- no personal value (the soak's names and emails) in any log.

Prints a JSON report. Inputs go through the durable HTTP accepts (SPEC §8: the embedded broker
is memory-only), retried by the senders until acknowledged, with the same event ids.

    python -m bench.soak --minutes 10 [--usage-rate 2000] [--seed 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.messaging import events as ev
from shared.messaging.outbox import build_envelope
from shared.ops.stack import free_port
from shared.settings import DEV_TOKEN_SECRET, SERVICE_NAMES
from shared.web.auth import mint_token
from tests.e2e.processes import OutputReader, alive, child_running, descendants

METER = "soak_calls"
COMPONENTS = {"postgres": " -D ", "broker": "broker --listener-url",
              **{name: f"cli serve {name}" for name in SERVICE_NAMES}}


def envelope(payload: ev.Payload, source: str) -> dict[str, Any]:
    return build_envelope(payload, source=source)[2].model_dump(mode="json")


class Soak:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = root
        self.ports = {name: free_port() for name in SERVICE_NAMES}
        self.env = dict(os.environ)
        self.env.update({
            "REKISTERI_DATA_DIR": str(root / "data"),
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1",
            "BILLING_AUTO_CLOSE": "false", "RETENTION_GRACE_DAYS": "30", "LOG_LEVEL": "INFO",
            **{f"{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
        })
        self.url = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.tokens = {role: mint_token(DEV_TOKEN_SECRET, user="soak", role=role)
                       for role in ("service", "register_user", "register_owner", "billing")}
        self.client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=40))
        self.stop = asyncio.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.output: OutputReader | None = None
        self.customers = [uuid.uuid4() for _ in range(20)]
        self.usage_accepted: Counter[uuid.UUID] = Counter()  # per customer: events acknowledged (202)
        self.usage_ids: set[str] = set()
        self.persons: dict[uuid.UUID, dict[str, Any]] = {}  # person id -> what was sent
        self.banned: list[tuple[uuid.UUID, str]] = []
        self.injected: set[str] = set()  # ids of the bad events sent on purpose
        self.secrets: list[str] = []  # personal values the logs must never contain
        self.counts: Counter[str] = Counter()
        self.kills: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()

    # -- the register -----------------------------------------------------------------
    async def start(self) -> float:
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.ops.cli", "up"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = OutputReader(self.proc.stdout)
        while "READY" not in self.output.lines:
            if self.proc.poll() is not None or time.monotonic() - started > 180:
                raise RuntimeError("rekisteri up did not start:\n" + self.output.text()[-3000:])
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    def shutdown(self) -> None:
        if self.proc is None:
            return
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)

    async def send(self, method: str, service: str, path: str, body: Any = None, role: str = "service",
                   deadline_s: float = 180) -> httpx.Response:
        """Retry the same content until a success: the register may be restarting a component."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                response = await self.client.request(method, f"{self.url[service]}{path}", json=body,
                                                     headers={"Authorization": f"Bearer {self.tokens[role]}"})
                if response.status_code < 300:
                    return response
                if response.status_code < 500:
                    raise RuntimeError(f"{method} {service}{path}: {response.status_code} {response.text[:300]}")
                self.errors[f"{service}:{response.status_code}"] += 1
            except httpx.TransportError as exc:
                self.errors[f"{service}:{type(exc).__name__}"] += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {service}{path}: no success within {deadline_s} s")
            await asyncio.sleep(0.3)

    async def ready(self) -> bool:
        for url in self.url.values():
            try:
                if (await self.client.get(f"{url}/readyz", timeout=5)).status_code != 200:
                    return False
            except httpx.TransportError:
                return False
        return True

    # -- traffic ---------------------------------------------------------------------
    async def setup(self) -> None:
        await self.send("PUT", "billing", f"/billing/meters/{METER}", {"aggregation": "sum"}, role="billing")
        for customer in self.customers:
            await self.send("PUT", "billing", f"/billing/customers/{customer}/plan",
                            {"components": [{"meter": METER, "model": "per_unit", "unit_price": "0.01"}]},
                            role="billing")

    async def usage(self) -> None:
        """Usage at `--usage-rate` events/s in batches of 500 from `--usage-senders` senders at
        once, as a platform's several producers would send (one batch at a time cannot go
        faster than one accept's round trip allows); now and then a bad event."""
        senders = self.args.usage_senders
        await asyncio.gather(*(self.usage_sender(self.args.usage_rate / senders) for _ in range(senders)))

    async def usage_sender(self, rate: float) -> None:
        """One sender's share of the usage. Its rate is kept on the whole run, not per batch:
        after a component's restart held a batch back, the batches behind it go at once until
        the schedule is caught up (a platform that sends usage would have queued it meanwhile)."""
        batch_size = 500
        began, scheduled = time.monotonic(), 0
        while not self.stop.is_set():
            when = datetime.now(UTC) - timedelta(minutes=1)
            batch: list[tuple[uuid.UUID | None, dict[str, Any]]] = []
            for _ in range(batch_size):
                customer = self.rng.choice(self.customers)
                batch.append((customer, envelope(ev.UsageRecorded(customer_id=customer, meter=METER,
                                                                  quantity=Decimal(1), time=when),
                                                 source="soak-platform")))
            if self.rng.random() < 0.05:  # an injected bad event: an unknown meter, dead-lettered
                bad = envelope(ev.UsageRecorded(customer_id=self.customers[0], meter="soak_no_such_meter",
                                                quantity=Decimal(1), time=when), source="soak-platform")
                self.injected.add(bad["id"])
                batch.append((None, bad))
            response = await self.send("POST", "billing", "/events/usage-recorded", {"events": [e for _, e in batch]})
            rejected = {r.get("index") for r in response.json().get("rejected", [])}
            for i, (customer, e) in enumerate(batch):
                if customer is not None and i not in rejected and e["id"] not in self.usage_ids:
                    self.usage_ids.add(e["id"])
                    self.usage_accepted[customer] += 1
            self.counts["usage_events"] += len(batch)
            scheduled += batch_size
            pause = began + scheduled / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)

    async def persons_flow(self) -> None:
        """A person from CRM, a relationship, sometimes an assignment, a ban, an end."""
        while not self.stop.is_set():
            token = uuid.uuid4().hex[:10]
            ref, email, last = f"soak-{token}", f"soak.{token}@example.fi", f"Soaksson{token}"
            self.secrets += [email, last]
            await self.send("POST", "contacts", "/events/contact-upserted", {"events": [envelope(ev.ContactUpserted(
                external_ref=ref, source=ev.DataSource.b2b_register, first_name="Soak", last_name=last,
                emails=[email]), source="soak-crm")]})
            person_id = await self.person_id(ref)
            if person_id is None:
                self.errors["person_not_registered_in_time"] += 1
                continue
            self.counts["persons"] += 1
            person: dict[str, Any] = {"ref": ref, "email": email, "state": "active"}
            self.persons[person_id] = person
            now = datetime.now(UTC)
            relationship = uuid.uuid4()
            started = envelope(ev.RelationshipStarted(person_id=person_id, relationship_id=relationship,
                                                      kind="customer", started_at=now), source="soak-crm")
            for service in ("contacts", "retention"):
                await self.send("POST", service, "/events/relationship-started", {"events": [started]})
            self.counts["relationships"] += 1
            if self.rng.random() < 0.3:
                assignment = uuid.uuid4()
                for payload in (ev.AssignmentStarted(person_id=person_id, assignment_id=assignment, given_by="customer",
                                                     started_at=now),
                                ev.AssignmentEnded(person_id=person_id, assignment_id=assignment,
                                                   ended_at=now + timedelta(seconds=1))):
                    topic = "assignment-started" if isinstance(payload, ev.AssignmentStarted) else "assignment-ended"
                    e = envelope(payload, source="soak-crm")
                    for service in ("contacts", "retention"):
                        await self.send("POST", service, f"/events/{topic}", {"events": [e]})
                self.counts["assignments"] += 1
            if self.rng.random() < 0.4:
                await self.send("POST", "consent", "/optouts", {"person_id": str(person_id),
                                                                 "purposes": ["direct_advertising"],
                                                                 "channels": ["email"], "method": "phone"},
                                role="register_user")
                self.banned.append((person_id, email))
                self.counts["bans"] += 1
            if self.rng.random() < 0.3:
                ended = envelope(ev.RelationshipEnded(person_id=person_id, relationship_id=relationship,
                                                      ended_at=now + timedelta(seconds=2)), source="soak-crm")
                for service in ("contacts", "retention"):
                    await self.send("POST", service, "/events/relationship-ended", {"events": [ended]})
                person["state"] = "ended"
            if self.rng.random() < 0.1:
                await self.send("POST", "contacts", "/access-requests", {
                    "person_id": str(person_id), "verification": "in_person", "verified_by": "soak-desk"},
                    role="register_owner")
                self.counts["access_requests"] += 1

    async def person_id(self, ref: str) -> uuid.UUID | None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = await asyncpg.connect(self.env["DATABASE_URL"], timeout=5)
                try:
                    found = await conn.fetchval("SELECT id FROM contacts.persons WHERE external_ref = $1", ref)
                finally:
                    await conn.close()
                if found:
                    return found
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pass
            await asyncio.sleep(0.3)
        return None

    async def checks(self) -> None:
        """Campaign checks against banned persons while the chaos goes on (answers are kept
        for the end: a ban may still be on its way right after it was sent)."""
        while not self.stop.is_set():
            if self.banned:
                person_id, email = self.rng.choice(self.banned)
                await self.send("POST", "consent", "/checks", {"purpose": "direct_advertising", "channel": "email",
                                                                "person_id": str(person_id)}, role="register_user")
                self.counts["checks"] += 1
            await asyncio.sleep(0.2)

    async def chaos(self) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=self.rng.uniform(self.args.chaos_min_s,
                                                                                  self.args.chaos_max_s))
                return
            except TimeoutError:
                pass
            name = self.rng.choice(sorted(COMPONENTS))
            assert self.proc is not None
            pid = child_running(self.proc.pid, COMPONENTS[name])
            if pid is None:
                continue
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            ready_again: float | None = None
            while time.monotonic() - killed_at < 300:
                if await self.ready():
                    ready_again = round(time.monotonic() - killed_at, 1)
                    break
                await asyncio.sleep(0.3)
            self.kills.append({"component": name, "ready_again_s": ready_again})

    # -- the end ----------------------------------------------------------------------
    async def violations(self) -> dict[str, list[str]]:
        conn = await asyncpg.connect(self.env["DATABASE_URL"])
        found: dict[str, list[str]] = {}
        try:
            rows = await conn.fetch("SELECT customer_id, sum(event_count) AS n FROM billing.usage_aggregates"
                                    " WHERE customer_id = ANY($1) AND meter = $2 GROUP BY customer_id",
                                    self.customers, METER)
            billed = {r["customer_id"]: int(r["n"]) for r in rows}
            found["usage_billed_exactly_once"] = [
                f"{c}: billed {billed.get(c, 0)}, accepted {n}" for c, n in self.usage_accepted.items()
                if billed.get(c, 0) != n]
            status = {r["person_id"]: r["status"] for r in await conn.fetch(
                "SELECT person_id, status FROM consent.consent_state WHERE person_id = ANY($1)"
                " AND purpose = 'direct_advertising' AND channel = 'email'", [p for p, _ in self.banned])}
            found["bans_effective"] = [f"{p}: consent state {status.get(p)}" for p, _ in self.banned
                                       if status.get(p) != "banned"]
            contacts = {r["id"]: r["lifecycle_state"] for r in await conn.fetch(
                "SELECT id, lifecycle_state FROM contacts.persons WHERE id = ANY($1)", list(self.persons))}
            retention = {r["person_id"]: r["state"] for r in await conn.fetch(
                "SELECT person_id, state FROM retention.persons WHERE person_id = ANY($1)", list(self.persons))}
            found["lifecycle_states_agree"] = [
                f"{p}: sent {s['state']}, contacts {contacts.get(p)}, retention {retention.get(p)}"
                for p, s in self.persons.items() if not contacts.get(p) == retention.get(p) == s["state"]]
            dead = []
            for name in SERVICE_NAMES:
                dead += [(name, r["event_id"], r["reason"]) for r in await conn.fetch(
                    f"SELECT event_id, reason FROM {name}.dead_letters")]
            found["no_dead_letter_but_injected"] = [f"{n}: {e}: {r[:200]}" for n, e, r in dead if e not in self.injected]
            lettered = {e for n, e, _ in dead if n == "billing"}
            found["injected_dead_lettered"] = [e for e in self.injected if e not in lettered]
        finally:
            await conn.close()
        return found

    async def checks_say_banned(self) -> list[str]:
        wrong = []
        for person_id, email in self.banned:
            for target in ({"person_id": str(person_id)}, {"email": email}):
                answer = (await self.send("POST", "consent", "/checks", {
                    "purpose": "direct_advertising", "channel": "email", **target}, role="register_user")).json()
                if answer["allowed"]:
                    wrong.append(f"{person_id}: check by {next(iter(target))} allowed")
        return wrong

    def logs_with_personal_values(self) -> list[str]:
        assert self.output is not None
        texts = {"rekisteri up": self.output.text()}
        texts |= {p.name: p.read_text(errors="replace") for p in (self.root / "data").glob("*.log")}
        return [f"{name}: a soak person's {'email' if '@' in s else 'name'}"
                for name, text in texts.items() for s in self.secrets if s in text]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="rekisteri-soak-"))
    soak = Soak(args, root)
    report: dict[str, Any] = {"soak": {"minutes": args.minutes, "usage_rate_target": args.usage_rate,
                                       "usage_senders": args.usage_senders,
                                       "seed": args.seed}}
    try:
        report["soak"]["startup_s"] = round(await soak.start(), 1)
        await soak.setup()
        started = time.monotonic()
        tasks = [asyncio.create_task(soak.usage()), asyncio.create_task(soak.checks()),
                 asyncio.create_task(soak.chaos()),
                 *(asyncio.create_task(soak.persons_flow()) for _ in range(args.person_workers))]
        done, _ = await asyncio.wait(tasks, timeout=args.minutes * 60, return_when=asyncio.FIRST_EXCEPTION)
        soak.stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
        traffic_s = time.monotonic() - started
        settle_started = time.monotonic()
        while not await soak.ready() and time.monotonic() - settle_started < 120:
            await asyncio.sleep(0.5)
        violations: dict[str, list[str]] = {}
        while time.monotonic() - settle_started < args.settle_s:  # let relays and consumers catch up
            violations = await soak.violations()
            if not any(violations.values()):
                break
            await asyncio.sleep(2)
        violations["checks_say_banned"] = await soak.checks_say_banned()
        violations["no_personal_value_in_logs"] = soak.logs_with_personal_values()
        report["soak"].update({
            "traffic_s": round(traffic_s, 1), "settle_s": round(time.monotonic() - settle_started, 1),
            "usage_rate_achieved": round(soak.counts["usage_events"] / traffic_s),
            "traffic": dict(soak.counts), "usage_accepted": sum(soak.usage_accepted.values()),
            "injected_bad_events": len(soak.injected), "kills": soak.kills,
            "kills_by_component": dict(Counter(k["component"] for k in soak.kills)),
            "retried_responses": dict(soak.errors), "driver_failures": failures,
            "invariants": {name: {"ok": not wrong, "violations": len(wrong), "examples": wrong[:5]}
                           for name, wrong in violations.items()},
            "not_checked": ["every due disposition done: no disposition falls due within a soak "
                            "(the shortest R7 period is months); tests/integration/test_retention_* cover it"],
        })
        report["soak"]["ok"] = not failures and all(not w for w in violations.values())
        return report
    finally:
        await soak.client.aclose()
        soak.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--usage-rate", type=float, default=2000.0, help="usage events per second (target)")
    parser.add_argument("--usage-senders", type=int, default=4, help="usage batches in flight at once")
    parser.add_argument("--person-workers", type=int, default=3)
    parser.add_argument("--chaos-min-s", type=float, default=20.0)
    parser.add_argument("--chaos-max-s", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=180.0, help="how long the register may take to agree")
    parser.add_argument("--seed", type=int, default=1)
    report = asyncio.run(run(parser.parse_args()))
    print(json.dumps(report, indent=2))
    return 0 if report["soak"].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
