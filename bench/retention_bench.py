"""Retention benchmark (issue 5): 100,000 persons falling due at once, disposed of and
confirmed end to end. Target: <= 60 s on the embedded stack.

Starts its own embedded stack (PostgreSQL + Tansu) and retention in-process, seeds 100,000
persons whose final-disposition timers are all due, then times from the scheduler pass
until every disposition's evidence is complete. The other services are played by a fast
aiokafka consumer/producer: for each `disposition-commanded` it publishes what contacts,
consent and billing would (`contact-erased` and three `disposition-confirmed`); retention
adds its own confirmation when it sees `contact-erased`. Prints JSON.

With `--four-services` the other three are the real services, in-process beside retention
(`run_end_to_end`, issue 20).

Run: .venv/bin/python -m bench.retention_bench [--persons 100000] [--four-services]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.retention.app import SETTINGS, build_app
from shared.messaging.signing import SIGNED_TOPICS, canonical, keyring
from bench.common import run_on_embedded_stack
from tests.infra import create_database

SEED_CHUNK = 20_000


async def seed_due(pool, count: int, now: datetime, persons: list[uuid.UUID] | None = None) -> None:
    """Persons (`persons`, else new ids) whose last assignment ended a year and a day ago: all due at once."""
    ended = now - timedelta(days=366)
    every = persons or [uuid.uuid4() for _ in range(count)]
    for start in range(0, count, SEED_CHUNK):
        ids = every[start:start + SEED_CHUNK]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO persons (person_id, state) SELECT unnest($1::uuid[]), 'passive'", ids)
            await conn.execute(
                "INSERT INTO assignments (person_id, assignment_id, ended_at)"
                " SELECT p, gen_random_uuid(), $2 FROM unnest($1::uuid[]) AS p", ids, ended)
            await conn.execute(
                "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
                " SELECT unnest($1::uuid[]), 'dispose', $2, 'last_assignment_ended+365d', $3,"
                " 'rule=r7.2;grace=0d;disposition=365d'", ids, ended + timedelta(days=365), ended)


def _envelope(topic: str, source: str, data: dict, correlation_id: str) -> bytes:
    """The shared envelope, built by hand (the stand-in services must not be the bottleneck),
    signed like a real service's on the command topics (SPEC §9)."""
    envelope = {
        "id": str(uuid.uuid4()), "type": topic, "source": source, "time": datetime.now(UTC).isoformat(),
        "subject": data["person_id"], "schema_version": 1, "data": data, "correlation_id": correlation_id,
    }
    if topic in SIGNED_TOPICS:
        key = keyring().private_key(source)
        assert key is not None, "the benchmark's keyring has every service's key"
        envelope["signature"] = base64.b64encode(key.sign(canonical(envelope))).decode()
    return json.dumps(envelope, separators=(",", ":")).encode()


def other_services_process(bootstrap: str, stop, sent) -> None:  # multiprocessing primitives
    """The stand-ins run in their own process, as the real services would (and off retention's event loop)."""
    async def respond() -> None:
        flag = asyncio.Event()
        counts = {"commands_seen": 0, "events_sent": 0}

        async def watch() -> None:
            while not stop.is_set():
                sent.value = counts["events_sent"]
                await asyncio.sleep(0.1)
            flag.set()

        watcher = asyncio.create_task(watch())
        await other_services(bootstrap, flag, counts)
        await watcher
        sent.value = counts["events_sent"]

    asyncio.run(respond())


async def other_services(bootstrap: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Contacts, consent and billing honouring erasure commands, as fast as the broker allows."""
    consumer = AIOKafkaConsumer("disposition-commanded", bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000,
                                fetch_max_wait_ms=20, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            futures = []
            for messages in batches.values():
                for msg in messages:
                    command = json.loads(msg.value)["data"]
                    ref = {"person_id": command["person_id"], "command_id": command["command_id"]}
                    key = command["person_id"].encode()
                    futures.append(await producer.send(
                        "contact-erased", _envelope("contact-erased", "contacts", ref, command["command_id"]), key=key))
                    for service in ("contacts", "consent", "billing"):
                        data = {**ref, "service": service, "action": command["action"],
                                "confirmed_at": datetime.now(UTC).isoformat()}
                        futures.append(await producer.send(
                            "disposition-confirmed",
                            _envelope("disposition-confirmed", service, data, command["command_id"]), key=key))
                    counts["commands_seen"] += 1
            if futures:
                await asyncio.gather(*futures)
                counts["events_sent"] += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()


async def run(bootstrap: str, database_url: str, persons: int, timeout_s: float) -> dict:
    settings = SETTINGS(kafka_bootstrap_servers=bootstrap, database_url=database_url,
                        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=300,
                        retention_scheduler_interval_s=3600, outbox_batch_size=5000, outbox_poll_interval_s=0.05,
                        db_pool_max=20, log_level="WARNING")
    app = build_app(settings)
    runtime = app.state.runtime
    await runtime.start()
    ctx = multiprocessing.get_context("spawn")
    stop, sent = ctx.Event(), ctx.Value("q", 0)
    responder = ctx.Process(target=other_services_process, args=(bootstrap, stop, sent), daemon=True)
    responder.start()
    try:
        now = runtime.clock.now()
        seeded_at = time.perf_counter()
        await seed_due(runtime.pool, persons, now)
        seed_s = time.perf_counter() - seeded_at
        await asyncio.sleep(3)  # consumer groups joined before the clock starts

        figures = await disposed_of(runtime, persons, now, timeout_s, watch_relay=True)
        double = await runtime.pool.fetchval(
            "SELECT count(*) FROM (SELECT person_id FROM evidence GROUP BY person_id HAVING count(*) > 1) AS d")
        cpu_s = figures.pop("process_cpu_s")
        return {
            "benchmark": "retention_mass_disposition", "persons": persons, "seed_s": round(seed_s, 2),
            **figures, "persons_commanded_twice": double, "stand_in_events_sent": sent.value,
            # CPU of the retention process itself (the stand-ins run in another process): near the
            # wall time means retention's one event loop is the bottleneck, not PostgreSQL or the broker.
            "retention_process_cpu_s": cpu_s,
            "machine_cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        stop.set()
        await asyncio.to_thread(responder.join, 30)
        await runtime.stop()


async def run_end_to_end(bootstrap: str, database_url: str, persons: int, timeout_s: float) -> dict:
    """The same disposition through the four real services in-process (issue 20): contacts
    erases on `disposition-commanded` and publishes `contact-erased`; consent, billing and
    retention honour it and confirm. Contacts' persons are seeded by COPY (passive, as R6 left
    them), retention's timers as above."""
    from bench.access_bench import Stack

    stack = Stack(bootstrap, database_url, settings={
        "retention": {"retention_scheduler_interval_s": 3600, "outbox_batch_size": 5000, "db_pool_max": 20},
        **{name: {"outbox_batch_size": 5000} for name in ("contacts", "consent", "billing")}})
    await stack.start()
    try:
        retention = stack.runtime("retention")
        now = retention.clock.now()
        ids = [uuid.uuid4() for _ in range(persons)]
        seeded_at = time.perf_counter()
        async with stack.runtime("contacts").pool.acquire() as conn:
            for start in range(0, persons, SEED_CHUNK):
                await conn.copy_records_to_table("persons", columns=[
                    "id", "first_name", "last_name", "emails", "legal_basis", "purposes", "lifecycle_state"],
                    records=[(pid, "Disposed", f"Person{start + k}", [f"d{start + k}@dispose.fi"], "customer_relationship",
                              ["customer_relationship"], "passive") for k, pid in enumerate(ids[start:start + SEED_CHUNK])])
        await seed_due(retention.pool, persons, now, ids)
        seed_s = time.perf_counter() - seeded_at
        figures = await disposed_of(retention, persons, now, timeout_s)
        left = await stack.runtime("contacts").pool.fetchval("SELECT count(*) FROM persons WHERE id = ANY($1)", ids)
        cpu_s = figures.pop("process_cpu_s")
        return {
            "benchmark": "retention_mass_disposition_four_services", "persons": persons, "seed_s": round(seed_s, 2),
            **figures, "persons_left_in_contacts": left,
            # the four services share this process's one event loop (PostgreSQL and the broker do not)
            "services_process_cpu_s": cpu_s,
            "machine_cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        await stack.stop()


async def disposed_of(runtime, persons: int, now: datetime, timeout_s: float, *, watch_relay: bool = False) -> dict:
    """One scheduler pass at `now`, then until every disposition's evidence is complete: the
    figures both runs print (`process_cpu_s` is this process's CPU over that time)."""
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    outcome = await runtime.scheduler.run_due(now + timedelta(seconds=1))
    commanded_s = time.perf_counter() - started
    relayed_s = completed_s = None
    while time.perf_counter() - started < timeout_s:
        await asyncio.sleep(0.25)
        if watch_relay and relayed_s is None and not await runtime.relay.backlog():
            relayed_s = time.perf_counter() - started
        done = await runtime.pool.fetchval("SELECT count(*) FROM evidence WHERE completed_at IS NOT NULL")
        if done >= persons:
            completed_s = time.perf_counter() - started
            break
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    done = await runtime.pool.fetchval("SELECT count(*) FROM evidence WHERE completed_at IS NOT NULL")
    return {
        "scheduler_pass_s": round(commanded_s, 2), "erase_commands": outcome.erased,
        **({"outbox_relayed_s": round(relayed_s, 2) if relayed_s else None} if watch_relay else {}),
        "end_to_end_s": round(completed_s, 2) if completed_s else None, "confirmed_complete": done,
        "dispositions_per_s": round(persons / completed_s) if completed_s else None,
        "target_s": 60, "met_target": bool(completed_s and completed_s <= 60),
        "handler_seconds": _handler_seconds(runtime),
        "process_cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
    }


def _handler_seconds(runtime) -> dict[str, float]:
    """Time spent inside retention's batch transactions, per topic (from its own metrics)."""
    out = {}
    for metric in runtime.metrics.handler_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                out[sample.labels["topic"]] = round(sample.value, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument("--four-services", action="store_true",
                        help="contacts, consent and billing are the real services, not stand-ins")
    args = parser.parse_args()

    async def measure(infra):
        how = run_end_to_end if args.four_services else run
        return await how(infra.bootstrap, await create_database(infra), args.persons, args.timeout)

    run_on_embedded_stack("retention", measure, indent=2)


if __name__ == "__main__":
    main()
