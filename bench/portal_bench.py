"""Portal page benchmark (issue 19): server time per page, p50/p95, with 100,000 persons in
the register. Target: p95 <= 150 ms for every page.

Starts its own embedded stack and the four services in-process, bulk-inserts the persons
into contacts (plus a few through the APIs, so the person page has consents, a hold and an
access request to show), then serves the portal in-process with its service clients on the
services' ASGI apps (no network: the figure is the portal's and the services' work) and
times each page a staff member or a data subject opens, one request at a time.

Run: .venv/bin/python -m bench.portal_bench [--persons 100000] [--requests 100]
"""
from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.access_bench import Stack, figures, headers
from bench.common import run_on_embedded_stack
from services.portal import accounts
from services.portal.app import build_app
from services.portal.settings import PortalSettings
from shared.web.auth import Role
from tests.infra import create_database

PASSWORD = "bench password 123"


async def bulk_persons(stack: Stack, count: int) -> None:
    pool = stack.runtime("contacts").pool
    await pool.execute(
        "INSERT INTO persons (id, first_name, last_name, emails, legal_basis, purposes, lifecycle_state)"
        " SELECT gen_random_uuid(), 'Bulk', 'Sukunimi' || i, ARRAY['bulk' || i || '@example.fi'],"
        " 'customer_relationship', ARRAY['customer_relationship'], CASE WHEN i % 10 = 0 THEN 'passive' ELSE 'active' END"
        " FROM generate_series(1, $1) AS i", count)
    await pool.execute("ANALYZE persons")


async def seeded_person(stack: Stack) -> tuple[str, str]:
    """One person with data in every part of the person page, and a self-service account."""
    owner = headers(stack, Role.register_owner)
    person = (await stack.http["contacts"].post("/persons", headers=owner, json={
        "first_name": "Paula", "last_name": "Penkki", "emails": ["paula.penkki@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"]})).json()
    pid = person["person"]["id"]
    await stack.http["contacts"].post(f"/persons/{pid}/relationships", headers=owner, json={"kind": "customer"})
    await stack.http["consent"].post(f"/persons/{pid}/consents", headers=owner, json={
        "purpose": "distance_selling", "channel": "sms", "decision": "ban", "method": "bench"})
    await stack.http["retention"].post("/holds", headers=owner, json={
        "person_id": pid, "reason": "bench", "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
    await stack.http["contacts"].post("/access-requests", headers=owner, json={
        "person_id": pid, "verification": "in_person", "verified_by": "bench"})
    await stack.http["contacts"].post(f"/persons/{pid}/account", headers=owner,
                                      json={"username": "paula.bench", "password": PASSWORD})
    return pid, "paula.bench"


async def signed_in(app: Any, path: str, form: dict[str, str]) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://portal", timeout=60)
    page = await client.get(path)
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = await client.post(path, data={**form, "csrf": csrf})
    assert answer.status_code == 303, answer.text[:300]
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
    return figures(samples) | {"p95_ms": round(sorted(samples)[int(0.95 * len(samples)) - 1], 1)}


async def measure(infra: Any, persons: int, requests: int) -> dict[str, Any]:
    database_url = await create_database(infra)
    stack = Stack(infra.bootstrap, database_url)
    await stack.start()
    try:
        started = time.perf_counter()
        await bulk_persons(stack, persons)
        seed_s = time.perf_counter() - started
        pid, username = await seeded_person(stack)
        settings = PortalSettings(database_url=database_url, argon2_time_cost=1, argon2_memory_kib=8192,
                                  argon2_parallelism=1, log_level="WARNING")
        app = build_app(settings, transports={name: httpx.ASGITransport(app=a) for name, a in stack.apps.items()})
        portal = app.state.portal
        await portal.start()
        try:
            async with portal.pool.acquire() as conn:
                for role in ("register_owner", "register_user", "marketing", "billing"):
                    await accounts.add_staff(conn, portal.passwords, f"bench-{role}", role, PASSWORD)
            clients = {role: await signed_in(app, "/login", {"username": f"bench-{role}", "password": PASSWORD})
                       for role in ("register_owner", "register_user", "marketing", "billing")}
            clients["subject"] = await signed_in(app, "/me/login", {"username": username, "password": PASSWORD})
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
            await portal.stop()
    finally:
        await stack.stop()
    worst = max(r["p95_ms"] for r in results.values())
    return {"benchmark": "portal_pages", "persons": persons, "requests_per_page": requests,
            "seed_s": round(seed_s, 1), "pages": results, "worst_p95_ms": worst, "target_p95_ms": 150,
            "meets_target": worst <= 150}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    run_on_embedded_stack("portal", lambda infra: measure(infra, args.persons, args.requests), indent=2)


if __name__ == "__main__":
    main()
