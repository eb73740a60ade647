"""`rekisteri up`: PostgreSQL, the broker, the topics and all four services on this
machine, supervised until Ctrl-C, then stopped in order with no orphans (SPEC §7).

Supervised means: any component that dies (PostgreSQL, the broker, a service) is started
again after a back-off, and logged as `component_died_restarting`. A new broker gets the
topic set and a new incarnation marker before anything else uses it, so the services replay
their outboxes by themselves (SPEC §8); a new PostgreSQL recovers from its own log and the
services' pools reconnect. See docs/OPERATIONS.md."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterator
from urllib.parse import urlparse

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.db import ensure_database
from shared.messaging.signing import generate_keyring
from shared.messaging.kafka import ensure_topics, list_groups, publish_incarnation
from shared.messaging.lag import consumer_lag
from shared.logging import get_logger
from shared.privacy.keys import development_keys
from shared.settings import SERVICE_NAMES, PlatformSettings
from shared.ops.endpoints import data_dir, write_endpoints
from shared.ops.stack import EmbeddedBroker, EmbeddedPostgres, _die_with_parent

log = get_logger(__name__)


async def drain(bootstrap_servers: str, timeout_s: float, quiet_s: float = 1.0) -> bool:
    """Wait until every consumer group has caught up and stayed so for `quiet_s`.

    Producers' retries cover the pause while the broker restarts. False if the groups did
    not catch up in time (the restart then goes ahead and services replay their outbox).
    """
    deadline = time.monotonic() + timeout_s
    caught_up_since: float | None = None
    while time.monotonic() < deadline:
        try:
            lags = await consumer_lag(bootstrap_servers, await list_groups(bootstrap_servers))
            behind = sum(max(0, entry.lag) for entry in lags)
        except Exception as exc:  # noqa: BLE001 - a broker that cannot answer is not drained
            log.warning("drain_lag_unavailable", error=type(exc).__name__)
            behind = 1
        if behind == 0:
            caught_up_since = caught_up_since or time.monotonic()
            if time.monotonic() - caught_up_since >= quiet_s:
                return True
        else:
            caught_up_since = None
        await asyncio.sleep(0.25)
    return False


class SupervisorSettings(BaseSettings):
    """How soon a component that died is started again: `first_s`, doubling on each attempt
    up to `max_s`; one that stayed up for `stable_s` starts from `first_s` again."""

    model_config = SettingsConfigDict(env_prefix="rekisteri_restart_", extra="ignore", case_sensitive=False)

    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_first_s * 2.0 ** (attempt - 1))


@dataclass
class Supervised:
    """One component as the supervisor sees it: whether it died, and how to start it again."""

    name: str
    exit_code: Callable[[], int | None]
    restart: Callable[[], Awaitable[None]]
    attempt: int = 0  # restarts since it last stayed up for `stable_s`
    restart_at: float | None = None  # a restart is due then (it died, or the last try failed)
    up_since: float = field(default_factory=time.monotonic)
    paused: bool = False  # stopped on purpose (an operator's or a test's outage): not restarted


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a component's log, for the error that says it exited (the log is ours: JSON
    lines without personal values, SPEC §9)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc.strerror})"


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path, command: list[str] | None = None) -> None:
        self.name = name
        self.env = env
        self.command = command or [sys.executable, "-m", "shared.ops.cli", "serve", name]
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it for its whole life
        self.proc = subprocess.Popen(self.command, env=self.env,
                                     stdout=out, stderr=out, start_new_session=True, preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Stack:
    """The embedded stack. `start()` returns once every service answers /readyz."""

    def __init__(self, settings: PlatformSettings | None = None, *, root: Path | None = None,
                 durable: bool = True, services: tuple[str, ...] = SERVICE_NAMES, portal: bool = False,
                 portal_port: int | None = None) -> None:
        self.settings = settings or PlatformSettings()
        self.root = root or data_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        pg_port = urlparse(self.settings.database_url).port or 5432
        kafka_port = int(self.settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        self.postgres = EmbeddedPostgres(self.root / "pgdata", pg_port, durable=durable)
        self.broker = EmbeddedBroker(kafka_port, self.root / "broker.log")
        self.service_names = services
        self.portal = portal  # the web front end, started after the services (issue 19)
        if portal and portal_port is None:
            from services.portal.settings import PortalSettings

            portal_port = PortalSettings().portal_port
        self.portal_port = portal_port
        self.services: list[ServiceProcess] = []
        self.broker_recycles = 0
        self.supervisor = SupervisorSettings()
        self.supervising = False
        self.components: list[Supervised] = [
            Supervised("postgres", self.postgres.exit_code, self._restart_postgres),
            Supervised("broker", self.broker.exit_code, self._restart_broker),
        ]

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.settings.database_url
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.settings.kafka_bootstrap_servers
        # The embedded stack alone may run on the public development token secret (issue 16).
        env["REKISTERI_DEV_STACK"] = "true"
        # The ports `endpoints()` and `wait_ready()` use: a Stack given other ports must run its services there.
        env.update({f"{name.upper()}_PORT": str(self.settings.port_of(name)) for name in self.service_names})
        if self.portal:
            env["PORTAL_PORT"] = str(self.portal_port)
            env.update({f"PORTAL_{name.upper()}_URL": url for name, url in self.endpoints().items() if name != "portal"})
        # Tansu lets a group form in half the session timeout; 2 s keeps start-up quick here.
        # (Apache Kafka's minimum is 6 s, the settings' default.)
        env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "2000")
        env.setdefault("KAFKA_HEARTBEAT_INTERVAL_MS", "300")
        # Commands between services are signed (SPEC §9): the embedded stack's development
        # keyring, made once in the data directory, unless keys are configured.
        if not (env.get("REKISTERI_SIGNING_KEYRING") or env.get("REKISTERI_SIGNING_KEY")):
            keyring_file = self.root / "signing-keyring.json"
            if not keyring_file.exists():
                generate_keyring(keyring_file)
            env["REKISTERI_SIGNING_KEYRING"] = str(keyring_file)
        # SPEC §9: development keys kept in the data directory (services refuse to start without keys).
        env.update(development_keys(self.root, env))
        return env

    def endpoints(self) -> dict[str, str]:
        host = self.settings.http_host
        urls = {name: f"http://{host}:{self.settings.port_of(name)}" for name in self.service_names}
        if self.portal:
            urls["portal"] = f"http://{host}:{self.portal_port}"
        return urls

    async def start_infrastructure(self) -> None:
        started = time.monotonic()
        self.postgres.start()
        await ensure_database(self.settings.database_url)
        await self.start_broker()
        log.info("infrastructure_ready", seconds=round(time.monotonic() - started, 2))

    async def start_broker(self, *, previous_drained: bool = False) -> None:
        """Start the broker, re-create the topic set before anything produces, mark it."""
        self.broker.start()
        await self._prepare_broker(previous_drained=previous_drained)

    async def _prepare_broker(self, *, previous_drained: bool = False) -> None:
        await ensure_topics(self.settings.kafka_bootstrap_servers)
        await publish_incarnation(self.settings.kafka_bootstrap_servers, previous_drained=previous_drained)

    async def _restart_broker(self) -> None:
        """A broker that crashed comes back empty: topics and a new marker, so every service
        replays its outbox (its log is gone, drained or not).

        Started from this thread, not a worker thread: a child's parent-death signal fires
        when the thread that forked it ends."""
        if self.broker.exit_code() is not None:
            self.broker.start()
        await self._prepare_broker(previous_drained=False)

    async def _restart_postgres(self) -> None:
        if self.postgres.exit_code() is not None:  # crash recovery replays its WAL on start
            self.postgres.reap_leftovers()
            self.postgres.start()

    async def recycle_broker_if_needed(self) -> bool:
        """Past the memory cap: drain, then restart the broker empty (SPEC §8)."""
        cap = self.settings.rekisteri_broker_memory_cap_mb * 1024 * 1024
        rss = self.broker.rss_bytes()
        if rss <= cap:
            return False
        log.warning("broker_memory_cap_reached", rss_mb=rss // (1024 * 1024), cap_mb=cap // (1024 * 1024))
        drained = await drain(self.settings.kafka_bootstrap_servers, self.settings.rekisteri_broker_drain_timeout_s)
        self.broker.kill()
        await self.start_broker(previous_drained=drained)
        self.broker_recycles += 1
        log.warning("broker_recycled", drained=drained, recycles=self.broker_recycles)
        return True

    async def start_services(self, timeout: float = 60) -> None:
        for name in self.service_names:
            process = ServiceProcess(name, self.env, self.root)
            process.start()
            self.services.append(process)
            self.components.append(Supervised(name, process.exit_code, self._restarter(process)))
        await self.wait_ready(timeout, names=self.service_names)
        if self.portal:  # after the services: its pages call them
            process = ServiceProcess("portal", self.env, self.root, command=[sys.executable, "-m", "services.portal"])
            process.start()
            self.services.append(process)
            self.components.append(Supervised("portal", process.exit_code, self._restarter(process)))
            await self.wait_ready(timeout, names=("portal",))

    @staticmethod
    def _restarter(process: ServiceProcess) -> Callable[[], Awaitable[None]]:
        async def restart() -> None:
            process.restarts += 1
            process.start()
        return restart

    async def wait_ready(self, timeout: float = 60, names: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = {name: url for name, url in self.endpoints().items() if names is None or name in names}
        async with httpx.AsyncClient(timeout=2) as client:
            while pending:
                for name, url in list(pending.items()):
                    try:
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                for process in self.services:  # under supervision a dead service is started again: wait
                    if not process.alive() and process.name in pending and not self.supervising:
                        raise RuntimeError(f"service {process.name} exited; see {process.log_path}; its last lines:\n"
                                           + log_tail(process.log_path))
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready within {timeout:.0f} s: {', '.join(pending)}")
                await asyncio.sleep(0.2)

    async def supervise(self, stop: asyncio.Event, interval_s: float = 0.5) -> None:
        """Restart any component that died (crash, SIGKILL, OOM) until asked to stop."""
        self.supervising = True
        try:
            await self._supervise(stop, interval_s)
        finally:
            self.supervising = False

    async def _supervise(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            await self.recycle_broker_if_needed()
            for component in self.components:
                if stop.is_set():
                    break
                await self._check(component)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """Leave component `name` alone while inside (stop it, keep it down, start it again);
        if it is down on leaving, the supervisor starts it as after a crash."""
        component = next(c for c in self.components if c.name == name)
        component.paused = True
        try:
            yield
        finally:
            component.paused = False

    async def _check(self, component: Supervised) -> None:
        if component.paused:
            return
        now = time.monotonic()
        if component.restart_at is None:
            code = component.exit_code()
            if code is None:
                return
            if now - component.up_since >= self.supervisor.stable_s:
                component.attempt = 0
            component.attempt += 1
            delay = self.supervisor.delay(component.attempt)
            component.restart_at = now + delay
            # Names and numbers only: a component's own log (in the data directory) says why.
            log.warning("component_died_restarting", component=component.name, exit_code=code,
                        attempt=component.attempt, restart_in_s=round(delay, 2))
        if now < component.restart_at:
            return
        try:
            await component.restart()
        except Exception as exc:  # noqa: BLE001 - try again later, longer
            component.attempt += 1
            delay = self.supervisor.delay(component.attempt)
            component.restart_at = time.monotonic() + delay
            log.error("component_restart_failed", component=component.name, attempt=component.attempt,
                      error=type(exc).__name__, restart_in_s=round(delay, 2))
            return
        component.restart_at = None
        component.up_since = time.monotonic()
        log.warning("component_restarted", component=component.name, attempt=component.attempt)

    def stop(self) -> None:
        for process in reversed(self.services):
            process.stop()
        self.broker.stop()
        self.postgres.stop()


async def run_up() -> int:
    stack = Stack(portal=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        print(f"Starting PostgreSQL ({stack.settings.database_url}) and the broker "
              f"({stack.settings.kafka_bootstrap_servers}); data in {stack.root}", flush=True)
        await stack.start_infrastructure()
        await stack.start_services()
        for name, url in stack.endpoints().items():
            print(f"  {name:<10} {url}  " + ("(the web front end)" if name == "portal" else f"(docs {url}/docs)"),
                  flush=True)
        print(f"  {'kafka':<10} {stack.settings.kafka_bootstrap_servers}", flush=True)
        print(f"  {'postgres':<10} {stack.settings.database_url}", flush=True)
        # The operator CLI run from here talks to this stack without any variable set.
        endpoints = write_endpoints(stack.root, stack.settings, stack.endpoints())
        print(f"Endpoints in {endpoints} (read by the rekisteri CLI).", flush=True)
        print(f"Logs in {stack.root}/*.log. Ctrl-C stops everything.", flush=True)
        print(f"Started in {time.monotonic() - started:.1f} s", flush=True)
        print("READY", flush=True)
        await stack.supervise(stop)
        print("Stopping...", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - say what failed, then clean up
        print(f"rekisteri up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("Stopped.", flush=True)
