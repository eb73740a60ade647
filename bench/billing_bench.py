"""Billing benchmark (issue 6): sustained usage ingestion with dedupe and aggregation.

Starts its own embedded stack (PostgreSQL + Tansu), pre-produces N `usage-recorded` events
(plus a share of redelivered duplicates), then measures, in the same run:
- a bare aiokafka consumer reading every message (the transport's ceiling here), events/s;
- the billing service in-process (parse, validate, inbox dedupe, set-based upsert of the
  aggregates, commit, offset commit) until every event is in the database, events/s,
  both sustained (first to last applied) and wall (including the group join).
Prints JSON. Target >= 30,000 events/s.

With `--replicas N`, billing runs instead as N processes of its own sharing the topic's six
partitions (issue 20: two replicas against one on these cores), with the CPU seconds each
replica, PostgreSQL and the broker used.

Run: .venv/bin/python -m bench.billing_bench [--events 200000] [--customers 1000] [--duplicates 0.02]
     [--replicas N]
"""
from __future__ import annotations

import argparse
import json
import asyncio
import os
import random
import time
import uuid
from pathlib import Path
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.billing import domain, storage
from services.billing.app import MIGRATIONS, SETTINGS, build_app
from shared.db import create_pool, migrate
from shared.ops.stack import EmbeddedBroker
from shared.messaging.events import UsageRecorded
from shared.messaging.outbox import build_envelope
from bench.common import run_on_embedded_stack
from tests.infra import create_database

METERS = [domain.Meter("cpu_seconds", domain.Aggregation.sum, ("region",)),
          domain.Meter("storage_gb", domain.Aggregation.max),
          domain.Meter("api_calls", domain.Aggregation.count, ("endpoint",))]
PLAN = domain.PricePlan(flat_fee=Decimal("10"), components=[
    domain.Component(meter="cpu_seconds", model="graduated", tiers=[
        domain.Tier(up_to=Decimal(1000), unit_price=Decimal("0.01")), domain.Tier(unit_price=Decimal("0.005"))]),
    domain.Component(meter="api_calls", model="package", package_size=Decimal(1000), package_price=Decimal("1"))])


def make_events(count: int, customers: list[uuid.UUID], duplicates: float) -> list[tuple[bytes, bytes]]:
    rng = random.Random(6)
    now = datetime.now(UTC)
    people = [uuid.uuid4() for _ in range(200)]
    messages = []
    for i in range(count):
        customer = rng.choice(customers)
        meter = METERS[i % 3]
        payload = UsageRecorded(
            customer_id=customer, meter=meter.name, quantity=Decimal(rng.randint(1, 5000)) / 100,
            time=now - timedelta(seconds=rng.randint(0, 3 * 86400)),
            person_id=people[i % 200] if i % 5 == 0 else None,
            dimensions={"region": rng.choice(("fi", "se", "de")), "endpoint": rng.choice(("/a", "/b"))})
        _, key, envelope = build_envelope(payload, source="cloud-platform")
        messages.append((key.encode(), envelope.to_bytes()))
    messages += rng.sample(messages, int(count * duplicates))  # redelivered copies
    return messages


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send("usage-recorded", value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def bare_consumer(bootstrap: str, total: int) -> float:
    """Events/s of a plain batched aiokafka consumer reading the same messages."""
    consumer = AIOKafkaConsumer("usage-recorded", bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000,
                                fetch_max_wait_ms=200)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batch.values():
                if records and started is None:
                    started = time.perf_counter()
                seen += len(records)
            if batch:
                await consumer.commit()
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def billing_schema(database_url: str, schema: str, customers: list[uuid.UUID]) -> asyncpg.Pool:
    """Billing's schema migrated, with the meters and every customer's plan."""
    pool = await create_pool(database_url, schema)
    await migrate(pool, schema, MIGRATIONS)
    for meter in METERS:
        await storage.save_meter(pool, meter)
    for customer in customers:
        await storage.save_plan(pool, customer, PLAN)
    return pool


async def all_applied(pool: asyncpg.Pool, unique: int, started: float) -> int:
    """Wait until every unique event is in the aggregates (at most 600 s from `started`)."""
    applied = 0
    while applied < unique:
        applied = await pool.fetchval("SELECT coalesce(sum(event_count), 0)::bigint FROM usage_aggregates")
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"only {applied} of {unique} events applied in 600 s")
        await asyncio.sleep(0.2)
    return applied


async def inbox_rates(pool: asyncpg.Pool, unique: int) -> dict[str, int]:
    """Rates from the inbox's commit-side clock (received_at = each batch transaction's start),
    not from a poller's, which waits behind the consumer on the same event loop. Sustained:
    the last 90 % (after the group join and warm-up)."""
    span = await pool.fetchrow(
        "SELECT extract(epoch FROM max(received_at) - min(received_at)) AS all_s,"
        " extract(epoch FROM max(received_at) - percentile_disc(0.1) WITHIN GROUP (ORDER BY received_at)) AS tail_s"
        " FROM inbox WHERE topic = 'usage-recorded'")
    return {"billing_sustained_events_per_s": round(unique * 0.9 / float(span["tail_s"])),
            "billing_first_to_last_events_per_s": round(unique / float(span["all_s"]))}


async def billing_ingestion(bootstrap: str, database_url: str, customers: list[uuid.UUID], unique: int) -> dict:
    settings = SETTINGS(kafka_bootstrap_servers=bootstrap, database_url=database_url, billing_auto_close=False,
                        log_level="WARNING")
    pool = await billing_schema(database_url, settings.schema, customers)
    app = build_app(settings)
    runtime = app.state.runtime
    started = time.perf_counter()
    cpu_started = time.process_time()  # the batch consumer may start applying before start() returns
    await runtime.start()
    try:
        applied = await all_applied(pool, unique, started)
        done = time.perf_counter()
        cpu_us = (time.process_time() - cpu_started) / unique * 1e6
        rates = await inbox_rates(pool, unique)
        inbox = await pool.fetchval("SELECT count(*) FROM inbox WHERE topic = 'usage-recorded'")
        skipped = runtime.metrics.events_duplicate.labels(topic="usage-recorded")._value.get()
        return {
            **rates,
            "billing_wall_events_per_s_incl_join": round(unique / (done - started)),
            "billing_process_cpu_us_per_event": round(cpu_us, 1),  # this process only (not PG, broker)
            "billing_inbox_rows": inbox,
            "billing_duplicates_skipped": int(skipped),  # redelivered copies + any re-read after a rebalance
            "billing_events_applied": applied,
            **await http_accept(app, customers),
        }
    finally:
        await runtime.stop()
        await pool.close()


async def http_accept(app, customers: list[uuid.UUID], count: int = 50_000, batch: int = 1_000) -> dict:
    """The durable path (SPEC §8): the same envelopes as `POST /events/usage-recorded` batches of
    1,000, each answered 202 after its PostgreSQL commit (in-process ASGI: no network hop)."""
    import httpx

    from shared.web.auth import mint_token

    token = mint_token(app.state.runtime.settings.rekisteri_token_secret, user="bench", role="service")
    events = [json.loads(value) for _key, value in make_events(count, customers, 0)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://billing",
                                 timeout=60) as client:
        started = time.perf_counter()
        accepted = 0
        for at in range(0, count, batch):
            response = await client.post("/events/usage-recorded", json={"events": events[at:at + batch]},
                                         headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            accepted += response.json()["accepted"]
        elapsed = time.perf_counter() - started
    return {"billing_http_batch_1000_events_per_s": round(accepted / elapsed), "billing_http_accepted": accepted}


def _replica(bootstrap: str, database_url: str, stop, cpu) -> None:
    """One billing replica in a process of its own (its own interpreter, its own core's worth
    of Python); reports the CPU seconds it used once `stop` is set."""
    async def serve() -> None:
        settings = SETTINGS(kafka_bootstrap_servers=bootstrap, database_url=database_url, billing_auto_close=False,
                            log_level="WARNING")
        runtime = build_app(settings).state.runtime
        await runtime.start()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await runtime.stop()

    asyncio.run(serve())
    cpu.put(time.process_time())


def _cpu_seconds_of(names: tuple[str, ...]) -> float:
    """User and system CPU of every process named one of `names` (the embedded PostgreSQL's
    backends, the broker), from /proc; clock ticks at 100 a second."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            if name in names:
                rest = fields[1].split()
                total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


async def replicas_ingestion(bootstrap: str, database_url: str, customers: list[uuid.UUID], unique: int,
                             replicas: int) -> dict:
    """Billing as `replicas` processes sharing the topic's partitions (one consumer group):
    events/s from the inbox's commit-side clock, and where the CPU went."""
    import multiprocessing

    pool = await billing_schema(database_url, SETTINGS(kafka_bootstrap_servers=bootstrap,
                                                       database_url=database_url).schema, customers)
    context = multiprocessing.get_context("spawn")
    stop, cpu = context.Event(), context.Queue()
    broker = (Path(EmbeddedBroker.binary()).name[:15],)  # /proc keeps 15 characters of a name
    database_cpu, broker_cpu = _cpu_seconds_of(("postgres",)), _cpu_seconds_of(broker)
    processes = [context.Process(target=_replica, args=(bootstrap, database_url, stop, cpu)) for _ in range(replicas)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    try:
        await all_applied(pool, unique, started)
        database_cpu = _cpu_seconds_of(("postgres",)) - database_cpu
        broker_cpu = _cpu_seconds_of(broker) - broker_cpu
        rates = await inbox_rates(pool, unique)
    finally:
        stop.set()
        replica_cpu = [round(cpu.get(timeout=60), 1) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        await pool.close()
    return {
        "billing_replicas": replicas,
        **rates,
        "cpu_seconds": {"replicas": replica_cpu, "postgresql": round(database_cpu, 1), "broker": round(broker_cpu, 1)},
    }


async def run(infra, args) -> dict:
    database_url = await create_database(infra)
    customers = [uuid.uuid4() for _ in range(args.customers)]
    messages = make_events(args.events, customers, args.duplicates)
    produce_s = await produce(infra.bootstrap, messages)
    bare = await bare_consumer(infra.bootstrap, len(messages))
    if args.replicas:
        return {"billing_load_average_1m_at_end": os.getloadavg()[0], "billing_cpus": os.cpu_count(),
                "billing_events": args.events, "billing_bare_aiokafka_events_per_s": round(bare),
                **await replicas_ingestion(infra.bootstrap, database_url, customers, args.events, args.replicas)}
    figures = await billing_ingestion(infra.bootstrap, database_url, customers, args.events)
    # bare reads every message, duplicates included; billing's rate counts unique events
    billing_msgs_per_s = figures["billing_sustained_events_per_s"] * len(messages) / args.events
    return {
        "billing_load_average_1m_at_end": os.getloadavg()[0],  # other work on this machine skews rates
        "billing_cpus": os.cpu_count(),
        "billing_events": args.events,
        "billing_duplicates_redelivered": len(messages) - args.events,
        "billing_customers": args.customers,
        "billing_produce_s": round(produce_s, 1),
        "billing_bare_aiokafka_events_per_s": round(bare),
        **figures,
        "billing_ratio_to_bare_consumer": round(billing_msgs_per_s / bare, 2),
        "billing_target_events_per_s": 30000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.02)
    parser.add_argument("--replicas", type=int, default=0,
                        help="billing as this many processes sharing the partitions (0: in-process, the default)")
    args = parser.parse_args()
    run_on_embedded_stack("billing", lambda infra: run(infra, args))


if __name__ == "__main__":
    main()
