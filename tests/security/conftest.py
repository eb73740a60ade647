"""Fixtures of the security tests (issue 16): the shared services with cheap argon2, and a
service on a database of its own without a broker (for pool-exhaustion tests)."""
from __future__ import annotations

import importlib
import uuid
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from shared.db import create_pool, migrate
from tests.conftest import service_test_settings
from tests.helpers import auth
from tests.infra import create_database

FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
OWNER = auth("register_owner", user="owner-sec")
USER = auth("register_user", user="user-sec")


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


async def new_person(contacts: Any, headers: dict[str, str] = USER) -> uuid.UUID:
    resp = await contacts.http.post("/persons", headers=headers, json={
        "first_name": "Aino", "last_name": "Turvallinen", "emails": [f"a.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "assignment", "purposes": ["assignments"], "source": "person_web"})
    assert resp.status_code == 201, resp.text
    return uuid.UUID(resp.json()["person"]["id"])


async def passivate(contacts: Any, person_id: uuid.UUID) -> None:
    """Put a person in the passive state directly (the R6 flow itself is tested elsewhere)."""
    await contacts.runtime.pool.execute("UPDATE persons SET lifecycle_state = 'passive' WHERE id = $1", person_id)


@pytest.fixture
async def database_only_app(infra) -> AsyncIterator[Callable[..., Any]]:
    """`app, client = await database_only_app("contacts", db_pool_max=2)`: the service's HTTP
    app on a fresh database of its own, its pool and migrations only (no broker, no consumers),
    so a test can starve its pool without touching the shared services."""
    started: list[tuple[Any, httpx.AsyncClient]] = []

    async def start(name: str, **overrides: Any) -> tuple[Any, httpx.AsyncClient]:
        module = importlib.import_module(f"services.{name}.app")
        database_url = await create_database(infra)
        settings = module.SETTINGS(**{**service_test_settings(infra, database_url), **FAST_HASHES, **overrides})
        app = module.build_app(settings)
        runtime = app.state.runtime
        runtime._pool = await create_pool(settings.database_url, settings.schema, min_size=1,
                                          max_size=settings.db_pool_max,
                                          acquire_timeout_s=settings.db_acquire_timeout_s)
        await migrate(runtime.pool, settings.schema, module.MIGRATIONS)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=60)
        started.append((app, client))
        return app, client

    yield start
    for app, client in started:
        await client.aclose()
        await app.state.runtime.pool.close()
        if getattr(app.state, "audit_pool", None) is not None:
            await app.state.audit_pool.close()
