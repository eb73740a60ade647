"""Where the tests find Kafka and PostgreSQL, in the handbook's order:
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL if set; else testcontainers when a Docker engine
answers; else the embedded stack the project starts itself (what CI uses)."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from shared.db import ensure_database
from shared.messaging.kafka import ensure_topics, publish_incarnation
from shared.ops.stack import EmbeddedBroker, EmbeddedPostgres, free_port


@dataclass
class Infra:
    bootstrap: str
    server_url: str  # PostgreSQL server URL without a database name
    kind: str
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    _exit: ExitStack = field(default_factory=ExitStack)

    def database_url(self, database: str) -> str:
        return f"{self.server_url}/{database}"

    async def restart_broker(self) -> None:
        """Kill the memory-only broker and start it empty (SPEC §8 tests)."""
        if self.broker is None:
            raise RuntimeError("only the embedded broker can be restarted by the tests")
        self.broker.kill()
        self.broker.start()
        await publish_incarnation_after_topics(self.bootstrap)

    def close(self) -> None:
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()
        self._exit.close()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


def _strip_database(url: str) -> str:
    return url.rsplit("/", 1)[0]


def start_infra(workdir: Path) -> Infra:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database_url = os.environ.get("DATABASE_URL")
    if bootstrap and database_url:
        infra = Infra(bootstrap, _strip_database(database_url), "environment")
    elif _docker_answers():
        infra = _start_containers()
    else:
        infra = _start_embedded(workdir)
    asyncio.run(ensure_topics(infra.bootstrap))
    return infra


def _start_containers() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    exit_stack = ExitStack()
    kafka = exit_stack.enter_context(KafkaContainer("apache/kafka:3.8.0").with_kraft())
    postgres = exit_stack.enter_context(PostgresContainer("postgres:18", username="postgres", password="postgres"))
    url = postgres.get_connection_url(driver=None)
    return Infra(kafka.get_bootstrap_server(), _strip_database(url), "testcontainers", _exit=exit_stack)


def _start_embedded(workdir: Path) -> Infra:
    postgres = EmbeddedPostgres(workdir / "pgdata", free_port(), durable=False)
    postgres.start()
    broker = EmbeddedBroker(free_port(), workdir / "broker.log")
    broker.start()
    asyncio.run(publish_incarnation_after_topics(broker.bootstrap))
    return Infra(broker.bootstrap, _strip_database(postgres.url("postgres")), "embedded", broker, postgres)


async def publish_incarnation_after_topics(bootstrap: str) -> None:
    """The topic set first (auto-creation would pick wrong partitions), then the marker."""
    await ensure_topics(bootstrap)
    await publish_incarnation(bootstrap)


def fresh_database_name() -> str:
    return f"rekisteri_test_{uuid.uuid4().hex[:10]}"


async def create_database(infra: Infra) -> str:
    url = infra.database_url(fresh_database_name())
    await ensure_database(url)
    return url


@contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A directory for a PostgreSQL data directory (or anything a test runs on for long).

    Not pytest's `tmp_path`: every pytest run on the machine shares its base directory and
    prunes the oldest ones, so a concurrent run can take a data directory from under a
    running PostgreSQL (seen: initdb failing with "Permission denied" mid-way)."""
    path = Path(tempfile.mkdtemp(prefix=f"rekisteri-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
