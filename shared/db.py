"""PostgreSQL access: one asyncpg pool per service, bound to the service's own schema,
and the migrations runner (platform tables first, then the service's ordered SQL)."""
from __future__ import annotations

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


async def create_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (and pg_catalog) by default."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.UniqueViolationError:
        pass  # another service process created it at the same moment
    finally:
        await conn.close()
    return await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"rekisteri-{schema}"},
    )


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
