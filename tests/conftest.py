"""Session fixtures: real Kafka and PostgreSQL (tests/infra.py), and services run
in-process against them, each test session in a fresh database."""
from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest

from shared.logging import configure_logging
from shared.messaging.signing import generate_keyring
from shared.privacy.keys import generate_key

# SPEC §9: services refuse to start without their keys; each test session has fresh ones.
os.environ.setdefault("REKISTERI_SUPPRESSION_KEY", generate_key())
os.environ.setdefault("REKISTERI_MASTER_KEY", generate_key())
from shared.runtime import ServiceRuntime
from tests import helpers
from tests.infra import Infra, create_database, private_dir, start_infra


# Every service's command-signing key for this test session (SPEC §9), set before any use:
# services run in-process sign and verify with it, and `rekisteri up` subprocesses inherit it.
os.environ.setdefault("REKISTERI_SIGNING_KEYRING",
                      str(generate_keyring(Path(tempfile.mkdtemp(prefix="rekisteri-keys-")) / "keyring.json")))


@pytest.fixture(scope="session")
def infra() -> Infra:
    # A directory of our own, not pytest's tmp_path: pytest prunes old base temp dirs, and a
    # concurrent pytest run could remove the PostgreSQL data directory from under us.
    configure_logging("tests", "INFO")
    workdir = Path(tempfile.mkdtemp(prefix="rekisteri-test-"))
    started = start_infra(workdir)
    yield started
    started.close()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_tmp(request) -> Path:
    """Like `tmp_path`, but no concurrent pytest run prunes it (see `tests.infra.private_dir`)."""
    with private_dir(request.node.name[:40]) as path:
        yield path


@pytest.fixture(scope="session")
async def database_url(infra: Infra) -> str:
    url = await create_database(infra)
    helpers.KEYSTORE_DATABASE_URL = url  # read_topic opens sealed fields with the session's keys
    return url


def service_test_settings(infra: Infra, database_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a service run by the tests: fast group joins, fast relay."""
    return {
        "kafka_bootstrap_servers": infra.bootstrap,
        "database_url": database_url,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 300,
        "outbox_poll_interval_s": 0.1,
        # Every test client comes from one address: the login rate limits are tested on their own.
        "login_burst_per_ip": 100_000,
        "login_burst_per_username": 1000,
        **overrides,
    }


@dataclass
class RunningService:
    name: str
    app: Any
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    async def stop(self) -> None:
        await self.http.aclose()
        if self.runtime.started:
            await self.runtime.stop()


ServiceStarter = Callable[..., Awaitable[RunningService]]


@pytest.fixture(scope="session")
async def start_service(infra: Infra, database_url: str) -> AsyncIterator[ServiceStarter]:
    """Start a service in-process: `await start_service("consent", outbox_poll_interval_s=0.05)`.

    The same name started twice in a session returns the running one unless `fresh=True` or
    the running one was started with other values for the settings asked for: a test that
    asks for an hour between scheduler passes must not get the one an earlier test started
    with the default five seconds, whose background pass races its own.
    """
    running: dict[str, RunningService] = {}

    def satisfies(service: RunningService, overrides: dict[str, Any]) -> bool:
        settings = service.runtime.settings
        return all(getattr(settings, key, object()) == value for key, value in overrides.items())

    async def start(name: str, *, fresh: bool = False, **overrides: Any) -> RunningService:
        if name in running and not fresh and satisfies(running[name], overrides):
            return running[name]
        if name in running:
            await running.pop(name).stop()
        module = importlib.import_module(f"services.{name}.app")
        settings_cls = module.SETTINGS
        settings = settings_cls(**service_test_settings(infra, database_url, **overrides))
        app = module.build_app(settings)
        runtime: ServiceRuntime = app.state.runtime
        await runtime.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
        running[name] = RunningService(name, app, runtime, client)
        return running[name]

    yield start
    for service in list(running.values()):
        await service.stop()
