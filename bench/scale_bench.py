"""Scale (issue 20): the services on a full register, not an empty one.

- contacts with 1,000,000 persons: person lookup (`GET /persons/{id}`) and search by email,
  phone and name (`GET /persons?...`), p50/p99, through the real app in-process (HTTP, audit
  row per person read included); with the other three services beside it, the access report
  (R12, as `access_bench` measures it) among the million, and the marketing export walked page
  by page (its rate; its memory is `export_bench`'s, on the served process);
- retention with 1,000,000 pending timers: a scheduler pass that finds nothing due, and one
  that commands 10,000 due among the million;
- consent with 1,000,000 bans on the suppression list: one check's p50/p99 and a batch check
  of 100,000 emails (10 % banned), points/s.

The rows are put in by COPY into each service's own tables, after its migrations ran (the
services' import paths would take hours on 2 cores and measure the import, not the reads);
the values are what those paths store (lower-cased emails, E.164 phones, the services' enums,
keyed digests made by consent's own hasher). Prints figures, asserts nothing timed.

    python -m bench.scale_bench [--persons 1000000] [--samples 300]
"""
from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Awaitable, Callable

import httpx

from bench.common import run_on_embedded_stack
from tests.infra import create_database

CHUNK = 100_000


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2),
            "samples": len(values)}


async def timed(samples: int, call: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    timings = []
    for i in range(samples):
        started = time.perf_counter()
        await call(i)
        timings.append(time.perf_counter() - started)
    return percentiles(timings)


def person_row(i: int) -> tuple:
    return (uuid.uuid5(uuid.NAMESPACE_OID, f"scale-{i}"), f"Etu{i % 5000}", f"Suku{i}", [f"p{i}@scale{i % 97}.fi"],
            [f"+35840{i:07d}"], "customer_relationship", ["customer_relationship"], "active", f"scale-{i}")


async def copy_persons(conn: Any, persons: int) -> None:
    """`persons` rows into contacts' `persons` (the connection's search path), by COPY."""
    columns = ["id", "first_name", "last_name", "emails", "phones", "legal_basis", "purposes", "lifecycle_state",
               "external_ref"]
    for start in range(0, persons, CHUNK):
        await conn.copy_records_to_table("persons", columns=columns, records=[
            person_row(i) for i in range(start, min(persons, start + CHUNK))])
    await conn.execute("ANALYZE persons")


async def contacts_figures(infra, database_url: str, persons: int, samples: int, access_requests: int,
                           export_pages: int) -> dict[str, Any]:
    """contacts with `persons` persons, and the other three services beside it (in one database,
    their own schemas) for the access report and the marketing export."""
    from bench.access_bench import Stack, headers, measure, seed
    from shared.web.auth import Role

    stack = Stack(infra.bootstrap, database_url)
    await stack.start()
    try:
        pool = stack.runtime("contacts").pool
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await copy_persons(conn, persons)
        seeded_s = time.perf_counter() - started
        client = stack.http["contacts"]
        owner = headers(stack, Role.register_owner)
        step = max(1, persons // samples)

        async def ok(path: str, params: dict | None = None) -> None:
            response = await client.get(path, params=params, headers=owner)
            response.raise_for_status()

        result = {
            "persons": persons, "seed_copy_s": round(seeded_s, 1),
            "lookup_by_id": await timed(samples, lambda i: ok(f"/persons/{person_row(i * step)[0]}")),
            "search_by_email": await timed(samples, lambda i: ok("/persons", {"email": person_row(i * step)[3][0]})),
            "search_by_phone": await timed(samples, lambda i: ok("/persons", {"phone": person_row(i * step)[4][0]})),
            "search_by_name": await timed(min(samples, 50),
                                          lambda i: ok("/persons", {"name": person_row(i * step)[2]})),
            "target_search_p95_ms": 50,
        }
        # R12 at scale: persons with data in every service, their reports among the million.
        access = await measure(stack, await seed(stack, access_requests + 10), warmup=10)
        result["access_report"] = {"requests": access["requests"], "client": access["client"],
                                   "server": access["server"], "target_p99_ms": 500}
        result["marketing_export"] = await export_walk(client, headers(stack, Role.marketing), export_pages)
        return result
    finally:
        await stack.stop()


async def export_walk(client: httpx.AsyncClient, marketing: dict[str, str], pages: int) -> dict[str, Any]:
    """`GET /marketing/export` page after page (1,000 persons each, streamed, every person an
    audited read) among the million: its rate. Its memory is `export_bench`'s: here the
    services share the benchmark's process, and httpx's in-process transport keeps each
    response's chunks in reference cycles until a collection, so this process's RSS is not
    the service's."""
    exported, walked, cursor = 0, 0, None
    started = time.perf_counter()
    while walked < pages:
        walked += 1
        response = await client.get("/marketing/export", params={"limit": 1000, **({"cursor": cursor} if cursor else {})},
                                    headers=marketing)
        response.raise_for_status()
        body = response.json()
        exported += len(body["persons"])
        cursor = body["next"]
        if cursor is None:
            break
    elapsed = time.perf_counter() - started
    return {"pages": walked, "persons_exported": exported, "persons_per_s": round(exported / elapsed)}


async def retention_figures(infra, database_url: str, timers: int, due: int) -> dict[str, Any]:
    from services.retention.app import SETTINGS, build_app

    settings = SETTINGS(kafka_bootstrap_servers=infra.bootstrap, database_url=database_url, log_level="WARNING")
    app = build_app(settings)
    runtime = app.state.runtime
    await runtime.start()
    try:
        # Timers fall due 400 days from now and later: the service's own scheduler job (real
        # time) finds nothing, and this benchmark's passes run at chosen instants.
        now = datetime.now(UTC)
        ended = now - timedelta(days=366)
        at = now + timedelta(days=400)
        started = time.perf_counter()
        async with runtime.pool.acquire() as conn:
            for start in range(0, timers, CHUNK):
                rows = []
                for i in range(start, min(timers, start + CHUNK)):
                    is_due = i < due
                    rows.append((uuid.uuid5(uuid.NAMESPACE_OID, f"timer-{i}"), "dispose",
                                 at if is_due else at + timedelta(days=1 + i % 365),
                                 "last_assignment_ended+365d", ended, "rule=r7.2;grace=0d;disposition=365d"))
                await conn.copy_records_to_table("deadlines", records=rows, columns=[
                    "person_id", "action", "due_at", "basis", "anchor_at", "policy_version"])
                await conn.copy_records_to_table("persons", records=[(r[0], "passive") for r in rows],
                                                 columns=["person_id", "state"])
            await conn.execute("ANALYZE")
        seeded_s = time.perf_counter() - started
        scheduler = runtime.scheduler
        started = time.perf_counter()
        outcome = await scheduler.run_due(at)
        due_pass_s = time.perf_counter() - started
        started = time.perf_counter()
        idle = await scheduler.run_due(at)  # the same instant again: nothing left due
        idle_pass_s = time.perf_counter() - started
        return {"timers": timers, "seed_copy_s": round(seeded_s, 1),
                "pass_with_due": {"due": due, "commanded": outcome.erased + outcome.passivated + outcome.transferred,
                                  "held": outcome.held, "seconds": round(due_pass_s, 2)},
                "pass_nothing_due": {"commanded": idle.erased + idle.passivated, "ms": round(idle_pass_s * 1000, 1)}}
    finally:
        await runtime.stop()


async def consent_figures(infra, database_url: str, bans: int, batch: int, samples: int) -> dict[str, Any]:
    from services.consent import storage
    from services.consent.app import SETTINGS, build_app
    from services.consent.checks import check_batch, check_one
    from services.consent.handlers import hasher_for
    from shared.messaging.events import Channel, Purpose

    purpose, channel = list(Purpose)[0], list(Channel)[0]
    settings = SETTINGS(kafka_bootstrap_servers=infra.bootstrap, database_url=database_url, log_level="WARNING",
                        consent_batch_burst_entries=10**12)
    app = build_app(settings)
    runtime = app.state.runtime
    await runtime.start()
    try:
        hasher = hasher_for(runtime.settings)
        started = time.perf_counter()
        chains = await hasher.digests(runtime.pool)
        for start in range(0, bans, CHUNK):
            emails = [f"ban{i}@scale{i % 97}.fi" for i in range(start, min(bans, start + CHUNK))]
            async with runtime.pool.acquire() as conn, conn.transaction():
                await storage.suppress_digests(conn, chains.points(emails, []), [purpose.value], [channel.value],
                                               "bench")
        async with runtime.pool.acquire() as conn:
            await conn.execute("ANALYZE suppression_record")
        seeded_s = time.perf_counter() - started
        step = max(1, bans // samples)

        async def one(i: int) -> None:
            email = f"ban{i * step}@scale{(i * step) % 97}.fi" if i % 2 else f"free{i}@scale.fi"
            await check_one(runtime.pool, hasher, purpose, channel, email=email)

        single = await timed(samples, one)
        emails = [f"ban{i * 10}@scale{(i * 10) % 97}.fi" if i % 10 == 0 else f"free{i}@scale.fi"
                  for i in range(batch)]
        rounds = []
        for _ in range(3):
            started = time.perf_counter()
            await check_batch(runtime.pool, hasher, purpose, channel, emails=emails, phones=[], person_ids=[])
            rounds.append(time.perf_counter() - started)
        return {"bans": bans, "seed_s": round(seeded_s, 1), "check_one": single,
                "batch_check": {"points": batch, "median_s": round(statistics.median(rounds), 3),
                                "points_per_s_median": round(batch / statistics.median(rounds)),
                                "target_points_per_s": 200_000}}
    finally:
        await runtime.stop()


async def run(args: argparse.Namespace, infra) -> dict[str, Any]:
    import os

    result: dict[str, Any] = {"benchmark": "scale", "load_average_at_start": os.getloadavg()}
    if "contacts" in args.only:
        result["contacts"] = await contacts_figures(infra, await create_database(infra), args.persons, args.samples,
                                                    args.access_requests, args.export_pages)
    if "retention" in args.only:
        result["retention"] = await retention_figures(infra, await create_database(infra), args.persons, args.due)
    if "consent" in args.only:
        result["consent"] = await consent_figures(infra, await create_database(infra), args.persons, args.batch,
                                                  args.samples)
    result["load_average_at_end"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000, help="persons, timers and bans")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--access-requests", type=int, default=100)
    parser.add_argument("--export-pages", type=int, default=100, help="1,000 persons a page")
    parser.add_argument("--only", default="contacts,retention,consent")
    args = parser.parse_args()
    run_on_embedded_stack("scale", lambda infra: run(args, infra), indent=2)


if __name__ == "__main__":
    main()
