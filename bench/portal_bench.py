"""Portal page benchmark (issue 19): server time per page, p50/p95, with 100,000 persons in
the register. Target: p95 <= 150 ms for every page.

Runs the system as `rekisteri up` does (the launcher's Stack: embedded PostgreSQL and broker,
the four services and the portal as their own processes, on free ports), bulk-inserts the
persons into contacts (10 % of them passivated), adds one person with data in every part of
the person page (consents, a hold, an access request, a self-service account), then times
each page a staff member or the data subject opens, one request at a time over loopback
(so the figure includes the portal's calls to the services and is an upper bound of the
portal's server time).

Run: .venv/bin/python -m bench.portal_bench [--persons 100000] [--requests 100]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.passwords import Passwords
from services.portal import accounts
from shared.logging import configure_logging
from shared.ops.launcher import Stack
from shared.settings import SERVICE_NAMES, PlatformSettings
from shared.web.auth import Role, mint_token

PASSWORD = "bench password 123"
STAFF = ("register_owner", "register_user", "marketing", "billing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def bulk_persons(database_url: str, count: int) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "contacts"})
    try:
        await conn.execute(
            "INSERT INTO persons (id, first_name, last_name, emails, legal_basis, purposes, lifecycle_state)"
            " SELECT gen_random_uuid(), 'Bulk', 'Sukunimi' || i, ARRAY['bulk' || i || '@example.fi'],"
            " 'customer_relationship', ARRAY['customer_relationship'],"
            " CASE WHEN i % 10 = 0 THEN 'passive' ELSE 'active' END FROM generate_series(1, $1) AS i", count)
        await conn.execute("ANALYZE persons")
    finally:
        await conn.close()


async def seeded_person(urls: dict[str, str], secret: str) -> tuple[str, str]:
    owner = {"Authorization": f"Bearer {mint_token(secret, user='bench', role=Role.register_owner)}"}
    async with httpx.AsyncClient(timeout=30, headers=owner) as http:
        person = (await http.post(f"{urls['contacts']}/persons", json={
            "first_name": "Paula", "last_name": "Penkki", "emails": ["paula.penkki@example.fi"],
            "legal_basis": "customer_relationship", "purposes": ["customer_relationship"]})).json()
        pid = person["person"]["id"]
        for method, url, body in [
            ("POST", f"{urls['contacts']}/persons/{pid}/relationships", {"kind": "customer"}),
            ("POST", f"{urls['consent']}/persons/{pid}/consents",
             {"purpose": "distance_selling", "channel": "sms", "decision": "ban", "method": "bench"}),
            ("POST", f"{urls['retention']}/holds", {"person_id": pid, "reason": "bench",
                                                    "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}),
            ("POST", f"{urls['contacts']}/access-requests",
             {"person_id": pid, "verification": "in_person", "verified_by": "bench"}),
        ]:
            (await http.request(method, url, json=body)).raise_for_status()
        # Staff open the account with a single-use code; the person sets the password (R11).
        opened = await http.post(f"{urls['contacts']}/persons/{pid}/account", json={"username": "paula.bench"})
        opened.raise_for_status()
    async with httpx.AsyncClient(timeout=30) as anonymous:
        (await anonymous.post(f"{urls['contacts']}/auth/activate", json={
            "username": "paula.bench", "code": opened.json()["activation_code"],
            "new_password": PASSWORD})).raise_for_status()
    return pid, "paula.bench"


async def signed_in(portal: str, path: str, form: dict[str, str]) -> httpx.AsyncClient:
    """A client holding a session (cookies by hand: they are Secure and this is loopback HTTP)."""
    client = httpx.AsyncClient(base_url=portal, timeout=60, follow_redirects=False)
    page = await client.get(path)
    csrf = page.cookies["rk_csrf"]
    answer = await client.post(path, data={**form, "csrf": csrf}, headers={"Cookie": f"rk_csrf={csrf}"})
    assert answer.status_code == 303, answer.text[:300]
    client.headers["Cookie"] = f"rk_session={answer.cookies['rk_session']}"
    return client


async def time_page(client: httpx.AsyncClient, path: str, requests: int, warmup: int = 5) -> dict[str, Any]:
    samples = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        response = await client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (path, response.status_code)
        if i >= warmup:
            samples.append(elapsed)
    return {"p50_ms": round(percentile(samples, 0.50), 1), "p95_ms": round(percentile(samples, 0.95), 1),
            "max_ms": round(max(samples), 1), "mean_ms": round(statistics.fmean(samples), 1)}


async def measure(root: Path, persons: int, requests: int) -> dict[str, Any]:
    os.environ.update({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8192", "ARGON2_PARALLELISM": "1",
                       "LOG_LEVEL": "WARNING"})
    settings = PlatformSettings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/rekisteri",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        **{f"{name}_port": free_port() for name in SERVICE_NAMES})
    stack = Stack(settings, root=root, durable=False, portal=True, portal_port=free_port())
    try:
        await stack.start_infrastructure()
        await bulk_persons_after_migrations(stack, settings, persons)
        urls = stack.endpoints()
        pid, username = await seeded_person(urls, settings.rekisteri_token_secret)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1,
                                         server_settings={"search_path": "portal"})
        async with pool.acquire() as conn:
            passwords = Passwords(1, 8192, 1)
            for role in STAFF:
                await accounts.add_staff(conn, passwords, f"bench-{role}", role, PASSWORD)
        await pool.close()
        portal = urls["portal"]
        clients = {role: await signed_in(portal, "/login", {"username": f"bench-{role}", "password": PASSWORD})
                   for role in STAFF}
        clients["subject"] = await signed_in(portal, "/me/login", {"username": username, "password": PASSWORD})
        pages = {
            "search_by_name (register_user)": ("register_user", "/staff/persons?name=Sukunimi4242"),
            "search_by_email (register_owner)": ("register_owner", "/staff/persons?email=bulk4242@example.fi"),
            "person (register_owner)": ("register_owner", f"/staff/persons/{pid}"),
            "person (register_user)": ("register_user", f"/staff/persons/{pid}"),
            "work_queues (register_owner)": ("register_owner", "/staff/queues"),
            "marketing_form (marketing)": ("marketing", "/staff/marketing"),
            "billing (billing)": ("billing", "/staff/billing"),
            "my_data (subject)": ("subject", "/me"),
            "my_marketing (subject)": ("subject", "/me/marketing"),
        }
        results = {name: await time_page(clients[role], path, requests) for name, (role, path) in pages.items()}
        for client in clients.values():
            await client.aclose()
    finally:
        stack.stop()
    worst = max(r["p95_ms"] for r in results.values())
    return {"benchmark": "portal_pages", "persons": persons, "requests_per_page": requests, "pages": results,
            "worst_p95_ms": worst, "target_p95_ms": 150, "meets_target": worst <= 150,
            "load_average": os.getloadavg()[0]}


async def bulk_persons_after_migrations(stack: Stack, settings: PlatformSettings, persons: int) -> None:
    """Start the services (they migrate their schemas), then add the persons."""
    await stack.start_services(timeout=180)
    await bulk_persons(settings.database_url, persons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    configure_logging("bench", "WARNING")
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the embedded PostgreSQL runs as its own user when we are root
        result = asyncio.run(measure(Path(tmp), args.persons, args.requests))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
