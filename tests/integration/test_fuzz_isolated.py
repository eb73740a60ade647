"""All four services in-process on a broker and a database of their own (issue 9).

The fuzzing, access-control, bad-event and leak tests create, close and break things (closing
billing periods, dead-lettering on every topic). Running them against the session's shared
services would change what other tests' services see and would split their consumer groups,
so these tests get their own embedded broker and their own database on the session's
PostgreSQL. Imported as a fixture by the other `test_fuzz*`/`test_access_control*`/`test_no_leaks*`
modules, which share one such register (their tests use fresh ids and count only their own
rows); the one test here checks the isolation itself.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from shared.messaging.kafka import ensure_topics, publish_incarnation
from shared.runtime import ServiceRuntime
from shared.settings import SERVICE_NAMES
from shared.ops.stack import EmbeddedBroker, free_port
from tests.conftest import service_test_settings
from tests.infra import create_database


@dataclass
class Isolated:
    """One isolated register: the four services, their HTTP clients, their broker."""

    bootstrap: str
    database_url: str
    apps: dict[str, Any]
    http: dict[str, httpx.AsyncClient]

    def runtime(self, name: str) -> ServiceRuntime:
        return self.apps[name].state.runtime


def isolated_settings(name: str, bootstrap: str, database_url: str, infra: Any, **overrides: Any) -> Any:
    settings_cls = importlib.import_module(f"services.{name}.app").SETTINGS
    values = {**service_test_settings(infra, database_url), "kafka_bootstrap_servers": bootstrap,
              "consumer_max_attempts": 2, **overrides}
    if name == "contacts":  # argon2 at its cheapest: login is fuzzed too, and R3's cost is not under test here
        values.update(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
    return settings_cls(**values)


async def start_isolated(infra: Any, workdir: Path) -> tuple[Isolated, EmbeddedBroker]:
    broker = EmbeddedBroker(free_port(), workdir / "isolated-broker.log")
    broker.start()
    await ensure_topics(broker.bootstrap)
    await publish_incarnation(broker.bootstrap)
    database_url = await create_database(infra)
    apps: dict[str, Any] = {}
    http: dict[str, httpx.AsyncClient] = {}
    for name in SERVICE_NAMES:
        module = importlib.import_module(f"services.{name}.app")
        app = module.build_app(isolated_settings(name, broker.bootstrap, database_url, infra))
        await app.state.runtime.start()
        apps[name] = app
        http[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                       base_url=f"http://{name}", timeout=30)
    return Isolated(broker.bootstrap, database_url, apps, http), broker


async def stop_isolated(isolated: Isolated, broker: EmbeddedBroker) -> None:
    for name, app in isolated.apps.items():
        await isolated.http[name].aclose()
        if app.state.runtime.started:
            await app.state.runtime.stop()
    broker.stop()


_SHARED: dict[str, Any] = {"users": 0}


@pytest.fixture(scope="session")
async def isolated(infra, tmp_path_factory) -> AsyncIterator[Isolated]:
    """One isolated register for every module that imports this fixture (each import is its own
    fixture definition to pytest, so they share the running services here; the last one out
    stops them)."""
    if "running" not in _SHARED:
        _SHARED["running"] = await start_isolated(infra, tmp_path_factory.mktemp("isolated"))
    _SHARED["users"] += 1
    try:
        yield _SHARED["running"][0]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            await stop_isolated(*_SHARED.pop("running"))


async def test_isolated_services_use_their_own_broker_and_database(infra, isolated):
    assert isolated.bootstrap != infra.bootstrap
    for name in SERVICE_NAMES:
        runtime = isolated.runtime(name)
        assert runtime.settings.database_url == isolated.database_url
        assert (await isolated.http[name].get("/readyz")).status_code == 200
