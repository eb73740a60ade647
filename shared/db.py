"""PostgreSQL access: one asyncpg pool per service, bound to the service's own schema,
and the migrations runner (platform tables first, then the service's ordered SQL)."""
from __future__ import annotations

import asyncio
import hashlib
import functools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)
PLATFORM_MIGRATIONS = Path(__file__).parent / "sql"
DEFAULT_ACQUIRE_TIMEOUT_S = 10.0
READINESS_CHECK_TIMEOUT_S = 2.0  # a /readyz answer takes at most this long
# Platform migrations given guards after they were applied (issue 16: they now skip what the
# database administrator created, so a per-service role passes them). A schema that applied the
# earlier text has what the guarded text makes: its recorded checksum is moved on, not refused.
SUPERSEDED_CHECKSUMS = {
    "platform/0003_keystore.sql": {"1c940f60926d906512c3b61b996faeb9f647deb441937ff7d32464be16de1841"},
    "platform/0003_audit_erasure_function.sql": {"87c439ef61d3897057dc6bd4af283a319e4f127001713496e607086efdcbb25f"},
    "platform/0005_erasure_ledger.sql": {"425bd2fcd9db6620c7c00514003d0f8e8022177d781f68088a24f0bd90f96b4c"},
}


async def answers(pool: asyncpg.Pool, timeout: float = READINESS_CHECK_TIMEOUT_S) -> bool:
    """Whether the database answers `SELECT 1` within `timeout`: a readiness check, which must
    answer the probe even when PostgreSQL has stopped answering (a pool acquire or a query on a
    half-open connection can otherwise wait for minutes)."""
    try:
        return bool(await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=timeout) == 1)
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no types: its Pool is Any
    """A pool whose every acquire gives up after `acquire_timeout_s` (asyncpg's waits forever).

    `pool.fetch(...)`, `pool.execute(...)` and `async with pool.acquire()` all go through
    `acquire`, so a saturated pool answers a `TimeoutError` instead of freezing the service.
    """

    def __init__(self, *args: object, acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> asyncpg.pool.PoolAcquireContext:
        return super().acquire(timeout=timeout if timeout is not None else self.acquire_timeout_s)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class BoundStore:
    """A service's storage module (or modules) bound to one transaction: `store.f(*args)` is
    `storage.f(conn, *args)`. Handlers and use cases see this (or an in-memory fake with the
    same functions, in a unit test), never the connection itself."""

    __slots__ = ("_modules", "_conn")

    def __init__(self, modules: ModuleType | tuple[ModuleType, ...], conn: asyncpg.Connection) -> None:
        self._modules = modules if isinstance(modules, tuple) else (modules,)
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        for module in self._modules:
            function = getattr(module, name, None)
            if function is not None:
                return functools.partial(function, self._conn)
        raise AttributeError(f"no storage function {name!r}")


async def create_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10,
                      acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (and pg_catalog) by default, and whose
    acquires time out (`DB_ACQUIRE_TIMEOUT_S`). TLS comes from the URL's `sslmode`."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        # Created only when missing: a per-service role owns its schema (made by the database
        # administrator, deploy/postgres/init-roles.sql) and may not create schemas.
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.UniqueViolationError:
        pass  # another service process created it at the same moment
    finally:
        await conn.close()
    pool = BoundedPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=None,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        acquire_timeout_s=acquire_timeout_s,
        server_settings={"search_path": schema, "application_name": f"rekisteri-{schema}"},
    )
    await pool
    return pool


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL when it is missing (embedded stack, tests)."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = database_url.rpartition("/")
        name = name.split("?")[0]
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


def _migration_files(service_dir: Path | None) -> list[tuple[str, Path]]:
    files = [("platform", p) for p in sorted(PLATFORM_MIGRATIONS.glob("*.sql"))]
    if service_dir is not None:
        files += [("service", p) for p in sorted(service_dir.glob("*.sql"))]
    return files


async def migrate(pool: asyncpg.Pool, schema: str, service_dir: Path | None) -> list[str]:
    """Apply what has not been applied, in order, under an advisory lock; safe to run twice.

    A migration that was edited after it was applied is an error, not a silent skip.
    """
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
            for kind, path in _migration_files(service_dir):
                name = f"{kind}/{path.name}"
                sql = path.read_text()
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done and done[name] in SUPERSEDED_CHECKSUMS.get(name, ()):
                    await conn.execute("UPDATE schema_migrations SET checksum = $2 WHERE name = $1", name, checksum)
                    done[name] = checksum
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(f"migration {name} changed after it was applied to schema {schema}")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", name, checksum
                    )
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    if applied_now:
        log.info("migrations_applied", schema=schema, migrations=applied_now)
    return applied_now
