"""Marketing export memory (issue 20): `GET /marketing/export` walked page by page against
contacts as it runs in production (its own process under `rekisteri up`, served by uvicorn,
over TCP), that process's resident memory sampled as the walk goes.

The persons are put in by COPY into contacts' table (as `scale_bench` does: the import path
would measure the import). A bounded export keeps the service's RSS level from the first
tenth of the pages to the last; `rss_mb` lists the samples, `growth_mb_per_100_pages` the
slope over the second half. `scale_bench`'s walk runs the services in the benchmark's own
process through httpx's in-process transport, so its RSS is the client's too.

    python -m bench.export_bench [--persons 200000] [--pages 150]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.scale_bench import copy_persons
from bench.soak import COMPONENTS, Soak
from shared.ops.stack import process_rss_bytes
from shared.settings import DEV_TOKEN_SECRET
from shared.web.auth import mint_token
from tests.e2e.processes import child_running

PAGE = 1000


def rss_mb(pid: int) -> float:
    return round(process_rss_bytes(pid) / 2**20, 1)


async def seed(database_url: str, persons: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "contacts"})
    try:
        await copy_persons(conn, persons)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    register = Soak(argparse.Namespace(seed=1), Path(tempfile.mkdtemp(prefix="rekisteri-export-")))
    try:
        startup_s = await register.start()
        assert register.proc is not None
        contacts = child_running(register.proc.pid, COMPONENTS["contacts"])
        if contacts is None:
            raise RuntimeError("no contacts process under rekisteri up")
        seeded_s = await seed(register.env["DATABASE_URL"], args.persons)
        marketing = {"Authorization": f"Bearer {mint_token(DEV_TOKEN_SECRET, user='bench', role='marketing')}"}
        samples: list[tuple[int, float]] = [(0, rss_mb(contacts))]
        cursor, exported, every = None, 0, max(1, args.pages // 10)
        started = time.perf_counter()
        for page in range(1, args.pages + 1):
            response = await register.client.get(f"{register.url['contacts']}/marketing/export", headers=marketing,
                                                  params={"limit": PAGE, **({"cursor": cursor} if cursor else {})})
            response.raise_for_status()
            body = response.json()
            exported += len(body["persons"])
            cursor = body["next"]
            if page % every == 0 or cursor is None:
                samples.append((page, rss_mb(contacts)))
            if cursor is None:
                break
        elapsed = time.perf_counter() - started
        half = [s for s in samples if s[0] >= samples[-1][0] // 2]
        slope = (half[-1][1] - half[0][1]) / max(1, half[-1][0] - half[0][0]) * 100
        return {"benchmark": "export", "persons": args.persons, "startup_s": round(startup_s, 1),
                "seed_copy_s": round(seeded_s, 1), "pages": samples[-1][0], "persons_exported": exported,
                "persons_per_s": round(exported / elapsed), "rss_mb": dict(samples),
                "growth_mb_per_100_pages": round(slope, 1)}
    finally:
        await register.client.aclose()
        register.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=150, help=f"{PAGE:,} persons a page")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
