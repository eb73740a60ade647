"""Consent benchmark (issue 4): ban propagation latency and batch-check throughput.

Starts its own embedded stack (PostgreSQL + Tansu) and the consent service in-process, then
prints JSON:
- ban propagation: an `optout-registered` published on Kafka (clock starts before the send)
  until a check of that person says denied (the check's own query, polled tightly on a
  separate connection): p50/p99 over sequential bans. Target p99 <= 25 ms.
- batch check: POST /checks/batch with 100,000 emails (10 % suppressed), through the HTTP
  app (validation, hashing, SQL, JSON), contact points per second. Target >= 50,000/s.
  Also the same check without HTTP (hashing + SQL + answer), to see what HTTP costs.

Run: .venv/bin/python -m bench.consent_bench [--bans 300] [--batch 100000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer

from services.consent import storage
from services.consent.app import SETTINGS, build_app
from services.consent.checks import check_batch
from services.consent.handlers import hasher_for
from shared.web.auth import Role, mint_token
from shared.messaging.events import Channel, OptoutRegistered, Purpose
from shared.messaging.outbox import build_envelope
from bench.common import run_on_embedded_stack
from tests.infra import create_database

PURPOSE, CHANNEL = Purpose.direct_advertising, Channel.email
# Between polls: tight (sub-millisecond) yet leaving the 2-core host's CPU to the consumer.
POLL_INTERVAL_S = 0.0005


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def wait_denied(pool, person_id: uuid.UUID, deadline: float) -> bool:
    async with pool.acquire() as conn:
        while time.perf_counter() < deadline:
            hits = await storage.check_persons(conn, [person_id], PURPOSE.value, CHANNEL.value)
            if any(hit == "banned" for _, hit in hits):
                return True
            await asyncio.sleep(POLL_INTERVAL_S)
    return False


async def ban_latency(bootstrap: str, pool, count: int) -> dict[str, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    samples: list[float] = []
    acks: list[float] = []  # of which: the broker acknowledging the publication (acks=all)
    try:
        for i in range(count + 20):  # the first 20 warm up the consumer and connections
            person = uuid.uuid4()
            topic, key, envelope = build_envelope(
                OptoutRegistered(person_id=person, purposes=[PURPOSE], channels=[CHANNEL], source="bench"),
                source="bench-web-form")
            value = envelope.to_bytes()
            started = time.perf_counter()
            await producer.send_and_wait(topic, value, key=key.encode())
            acked = time.perf_counter()
            if not await wait_denied(pool, person, started + (30 if i < 20 else 5)):
                raise RuntimeError("a ban did not take effect")
            if i >= 20:
                samples.append((time.perf_counter() - started) * 1000)
                acks.append((acked - started) * 1000)
    finally:
        await producer.stop()
    return {"samples": len(samples), "p50_ms": round(percentile(samples, 0.50), 2),
            "p99_ms": round(percentile(samples, 0.99), 2), "max_ms": round(max(samples), 2),
            "mean_ms": round(statistics.fmean(samples), 2),
            "publish_ack_p50_ms": round(percentile(acks, 0.50), 2), "publish_ack_p99_ms": round(percentile(acks, 0.99), 2)}


async def seed_suppression(runtime, emails: list[str]) -> None:
    points = (await hasher_for(runtime.settings).digests(runtime.pool)).points(emails, [])
    await storage.suppress_digests(runtime.pool, points, [PURPOSE.value], [CHANNEL.value], "bench")  # type: ignore[arg-type]


async def batch_throughput(client: httpx.AsyncClient, runtime, size: int, rounds: int) -> dict[str, float]:
    emails = [f"person{i}.{uuid.uuid4().hex[:6]}@example{i % 97}.fi" for i in range(size)]
    await seed_suppression(runtime, emails[::10])
    token = mint_token(runtime.settings.rekisteri_token_secret, user="bench", role=Role.marketing)
    headers = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"purpose": PURPOSE.value, "channel": CHANNEL.value, "emails": emails})
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        r = await client.post("/checks/batch", content=body, headers={**headers, "content-type": "application/json"})
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        out = r.json()
        if out["denied"] != len(emails[::10]):
            raise RuntimeError(f"expected {len(emails[::10])} denied, got {out['denied']}")
        timings.append(elapsed)
    core = []  # the same check without HTTP: hashing + SQL + building the answer
    for _ in range(rounds):
        started = time.perf_counter()
        await check_batch(runtime.pool, hasher_for(runtime.settings), PURPOSE, CHANNEL, emails=emails, phones=[],
                          person_ids=[])
        core.append(time.perf_counter() - started)
    best, median = min(timings), statistics.median(timings)
    return {"contact_points": size, "rounds": rounds, "best_s": round(best, 3), "median_s": round(median, 3),
            "points_per_s_median": round(size / median), "points_per_s_best": round(size / best),
            "without_http_points_per_s_median": round(size / statistics.median(core))}


async def run(args: argparse.Namespace, infra) -> dict[str, object]:
    database_url = await create_database(infra)
    # The per-user batch-check rate limit is lifted: this measures throughput, not the limit.
    settings = SETTINGS(kafka_bootstrap_servers=infra.bootstrap, database_url=database_url,
                        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=300, log_level="WARNING",
                        consent_batch_burst_entries=10**12)
    app = build_app(settings)
    runtime = app.state.runtime
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://consent", timeout=120)
    try:
        latency = await ban_latency(infra.bootstrap, runtime.pool, args.bans)
        batch = await batch_throughput(client, runtime, args.batch, args.rounds)
    finally:
        await client.aclose()
        await runtime.stop()
    return {"benchmark": "consent", "ban_propagation": {**latency, "target_p99_ms": 25},
            "batch_check": {**batch, "target_points_per_s": 50_000}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bans", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_on_embedded_stack("consent", lambda infra: run(args, infra), indent=2)


if __name__ == "__main__":
    main()
