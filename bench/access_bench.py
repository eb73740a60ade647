"""Access-report benchmark (issue 7, R12): request → report assembled from all four services.

Starts its own embedded stack (PostgreSQL + Tansu) and the four services in-process, seeds
persons who have data in every service (contact data, a relationship, a ban in consent,
usage in billing), then records one access request per person through contacts' HTTP app,
one after another, and measures until the request is fulfilled (contacts' own slice stored,
`access-requested` relayed, consent, retention and billing answered on `access-report-part`,
contacts assembled). Two figures, p50/p99 over the requests after a warm-up:
- client: from sending POST /access-requests until a tight poll on a separate connection
  sees the request fulfilled;
- server: `fulfilled_at - created_at` as PostgreSQL recorded them (no polling error).
Target: p99 <= 500 ms. Prints one line of JSON.

Run: .venv/bin/python -m bench.access_bench [--requests 200] [--warmup 10]
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.web.auth import Role, mint_token
from shared.messaging.events import UsageRecorded
from shared.messaging.lag import consumer_lag
from shared.messaging.outbox import build_envelope
from bench.common import run_on_embedded_stack
from bench.pauses import Pauses
from tests.infra import create_database

SERVICES = ("contacts", "consent", "retention", "billing")
POLL_INTERVAL_S = 0.001
METER = "bench_calls"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def figures(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 0.50), 1), "p99_ms": round(percentile(samples, 0.99), 1),
            "max_ms": round(max(samples), 1), "mean_ms": round(statistics.fmean(samples), 1)}


class Stack:
    """The four services in-process, each with an httpx client on its app."""

    def __init__(self, bootstrap: str, database_url: str, settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.bootstrap, self.database_url = bootstrap, database_url
        self.settings = settings or {}  # per service: settings over the benchmark's defaults
        self.apps: dict[str, Any] = {}
        self.http: dict[str, httpx.AsyncClient] = {}

    async def start(self) -> None:
        for name in SERVICES:
            module = importlib.import_module(f"services.{name}.app")
            overrides: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_kib": 8192,
                                         "argon2_parallelism": 1} if name == "contacts" else {}
            if name == "billing":
                overrides["billing_auto_close"] = False
            overrides.update(self.settings.get(name, {}))
            settings = module.SETTINGS(kafka_bootstrap_servers=self.bootstrap, database_url=self.database_url,
                                       **{"kafka_session_timeout_ms": 2000, "kafka_heartbeat_interval_ms": 300,
                                          "log_level": "WARNING", **overrides})
            app = module.build_app(settings)
            await app.state.runtime.start()
            self.apps[name] = app
            self.http[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}",
                                                timeout=60)

    def runtime(self, name: str) -> Any:
        return self.apps[name].state.runtime

    async def stop(self) -> None:
        for name in reversed(list(self.apps)):
            await self.http[name].aclose()
            await self.runtime(name).stop()


def headers(stack: Stack, role: Role, **kw: Any) -> dict[str, str]:
    secret = stack.runtime("contacts").settings.rekisteri_token_secret
    return {"Authorization": f"Bearer {mint_token(secret, user=kw.pop('user', 'bench'), role=role, **kw)}"}


async def seed(stack: Stack, count: int) -> list[str]:
    """Persons with data in every service, so each slice is real work."""
    staff, billing = headers(stack, Role.register_user), headers(stack, Role.billing)
    (await stack.http["billing"].put(f"/billing/meters/{METER}", headers=billing,
                                     json={"aggregation": "sum", "dimensions": []})).raise_for_status()
    customer = uuid.uuid4()
    (await stack.http["billing"].put(f"/billing/customers/{customer}/plan", headers=billing, json={
        "flat_fee": "0", "components": [{"meter": METER, "model": "per_unit", "unit_price": "0.10"}]})).raise_for_status()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    persons: list[str] = []
    try:
        for i in range(count):
            resp = await stack.http["contacts"].post("/persons", headers=staff, json={
                "first_name": "Bench", "last_name": f"Person{i}", "emails": [f"bench{i}.{uuid.uuid4().hex[:6]}@example.fi"],
                "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "staff"})
            resp.raise_for_status()
            pid = resp.json()["person"]["id"]
            (await stack.http["contacts"].post(f"/persons/{pid}/relationships", headers=staff,
                                               json={"kind": "customer"})).raise_for_status()
            (await stack.http["consent"].post(f"/persons/{pid}/consents", headers=staff, json={
                "purpose": "distance_selling", "channel": "phone", "decision": "ban", "method": "bench"})
             ).raise_for_status()
            topic, key, envelope = build_envelope(UsageRecorded(
                customer_id=customer, person_id=uuid.UUID(pid), meter=METER, quantity=Decimal("1"),
                time=datetime.now(UTC) - timedelta(days=1)), source="bench-platform")
            await producer.send(topic, envelope.to_bytes(), key=key.encode())
            persons.append(pid)
        await producer.flush()
    finally:
        await producer.stop()
    await settle(stack, persons)
    return persons


async def settle(stack: Stack, persons: list[str], timeout_s: float = 120) -> None:
    """Wait until every service has taken in the seeded events (relays and consumers idle)."""
    ids = [uuid.UUID(p) for p in persons]
    checks = {"retention": "SELECT count(DISTINCT person_id) FROM relationships WHERE person_id = ANY($1::uuid[])",
              "billing": "SELECT count(DISTINCT person_id) FROM usage_persons WHERE person_id = ANY($1::uuid[])",
              "contacts": "SELECT count(DISTINCT person_id) FROM marketing_bans WHERE person_id = ANY($1::uuid[])"}
    deadline = time.monotonic() + timeout_s
    for name, sql in checks.items():
        while await stack.runtime(name).pool.fetchval(sql, ids) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not take in the seeded events")
            await asyncio.sleep(0.1)


async def measure(stack: Stack, persons: list[str], warmup: int) -> dict[str, Any]:
    owner = headers(stack, Role.register_owner, user="bench-owner")
    client_ms: list[float] = []
    server_ms: list[float] = []
    pool = stack.runtime("contacts").pool
    slowest: tuple[float, uuid.UUID | None] = (0.0, None)
    async with pool.acquire() as conn, Pauses() as pauses:
        for i, pid in enumerate(persons):
            started = time.perf_counter()
            resp = await stack.http["contacts"].post("/access-requests", headers=owner, json={
                "person_id": pid, "verification": "in_person", "verified_by": "bench-owner"})
            resp.raise_for_status()
            request_id = uuid.UUID(resp.json()["id"])
            deadline = started + 30
            while True:
                row = await conn.fetchrow("SELECT status, fulfilled_at - created_at AS took FROM access_requests"
                                          " WHERE id = $1", request_id)
                if row["status"] == "fulfilled":
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("an access report was not assembled within 30 s: "
                                       + await stalled(stack, conn, request_id))
                await asyncio.sleep(POLL_INTERVAL_S)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= warmup:
                client_ms.append(elapsed)
                server_ms.append(row["took"].total_seconds() * 1000)
                if elapsed > slowest[0]:
                    slowest = (elapsed, request_id)
        items = await conn.fetchval("SELECT avg(jsonb_array_length(items)) FROM access_report_parts")
        stages = await stage_times(conn)
        slowest_stages = await stage_times(conn, slowest[1]) if slowest[1] else {}
    return {"requests": len(client_ms), "warmup": warmup, "client": figures(client_ms),
            "server": figures(server_ms), "mean_items_per_part": round(float(items or 0), 1),
            "stages_p50_ms_after_request": stages, "slowest_request_stages_ms": slowest_stages,
            "pauses": pauses.figures()}


async def hops(conn: Any, request_id: uuid.UUID) -> dict[str, Any]:
    """Which hops one request has passed (for a request that never completes)."""
    key = str(request_id)
    asked = await conn.fetchrow("SELECT event_id, published_at FROM contacts.outbox"
                                " WHERE topic = 'access-requested' AND key = $1", key)
    out: dict[str, Any] = {"contacts.asked_published": bool(asked and asked["published_at"])}
    for svc in SERVICES[1:]:
        out[f"{svc}.received"] = bool(asked and await conn.fetchval(
            f"SELECT count(*) FROM {svc}.inbox WHERE event_id = $1", asked["event_id"]))
        out[f"{svc}.part_published"] = await conn.fetchval(
            f"SELECT bool_or(published_at IS NOT NULL) FROM {svc}.outbox WHERE topic = 'access-report-part'"
            f" AND key = $1", key)
        out[f"contacts.part_from_{svc}_received"] = bool(await conn.fetchval(
            f"SELECT count(*) FROM contacts.inbox i JOIN {svc}.outbox o ON o.event_id = i.event_id"
            f" WHERE o.topic = 'access-report-part' AND o.key = $1", key))
        out[f"contacts.part_from_{svc}_stored"] = bool(await conn.fetchval(
            "SELECT count(*) FROM contacts.access_report_parts WHERE request_id = $1 AND service = $2",
            request_id, svc))
    out["contacts.dead_letters"] = await conn.fetchval("SELECT count(*) FROM contacts.dead_letters")
    return out


async def stalled(stack: Stack, conn: Any, request_id: uuid.UUID) -> str:
    """What a request that never completed passed, and how far contacts' consumer group is
    behind on the parts' topic (whether the part reached the broker and was not fetched)."""
    lag = [(entry.partitions, entry.total) for entry in await consumer_lag(stack.bootstrap, ["contacts"])
           if entry.topic == "access-report-part"]
    return f"{await hops(conn, request_id)}; contacts' lag on access-report-part (partitions, total): {lag}"


async def stage_times(conn: Any, request_id: uuid.UUID | None = None) -> dict[str, float | None]:
    """Where the time goes, per hop (ms after the request row was written; the median over every
    request, or one request's): contacts' relay publishing `access-requested`, each service
    taking it in and relaying its part, and contacts storing that part. All four schemas live
    in one database here."""
    stages = {"contacts.asked_published": "SELECT o.published_at - r.created_at FROM contacts.access_requests r"
                                          " JOIN contacts.outbox o ON o.topic = 'access-requested' AND o.key = r.id::text"}
    for svc in SERVICES[1:]:
        stages[f"{svc}.received"] = (
            f"SELECT i.received_at - r.created_at FROM contacts.access_requests r JOIN contacts.outbox o"
            f" ON o.topic = 'access-requested' AND o.key = r.id::text"
            f" JOIN {svc}.inbox i ON i.event_id = o.event_id")
        stages[f"{svc}.part_published"] = (
            f"SELECT o.published_at - r.created_at FROM contacts.access_requests r"
            f" JOIN {svc}.outbox o ON o.topic = 'access-report-part' AND o.key = r.id::text")
        stages[f"contacts.part_from_{svc}_stored"] = (
            f"SELECT p.received_at - r.created_at FROM contacts.access_requests r"
            f" JOIN contacts.access_report_parts p ON p.request_id = r.id AND p.service = '{svc}'")
    out = {}
    for name, sql in stages.items():
        rows = await conn.fetch(f"{sql} WHERE r.id = $1", request_id) if request_id else await conn.fetch(sql)
        values = sorted(r[0].total_seconds() * 1000 for r in rows if r[0] is not None)
        out[name] = round(values[len(values) // 2], 1) if values else None
    return out


async def run(args: argparse.Namespace, infra: Any) -> dict[str, Any]:
    stack = Stack(infra.bootstrap, await create_database(infra))
    await stack.start()
    try:
        persons = await seed(stack, args.requests + args.warmup)
        result = await measure(stack, persons, args.warmup)
    finally:
        await stack.stop()
    return {"benchmark": "access_report", **result, "target_p99_ms": 500,
            "meets_target": result["client"]["p99_ms"] <= 500}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    run_on_embedded_stack("access", lambda infra: run(args, infra))


if __name__ == "__main__":
    main()
