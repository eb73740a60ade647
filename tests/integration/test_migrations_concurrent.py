"""Every service migrates at start-up at once, and the platform's migrations create what belongs
to the whole cluster (a role): run together on the real PostgreSQL, each schema's transaction
must find the role the first one made, not fail on a duplicate key (seen: consent and retention
exiting at start-up under `rekisteri up`, issue 20)."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg

from tests.infra import create_database

MIGRATION = Path(__file__).resolve().parents[2] / "shared" / "sql" / "0003_audit_erasure_function.sql"


async def test_the_audit_eraser_role_migration_run_by_every_service_at_once_succeeds_in_each(infra):
    database_url = await create_database(infra)
    for attempt in range(5):  # a race: several rounds, each with a role no one has made yet
        role = f"rekisteri_test_eraser_{uuid.uuid4().hex[:12]}"
        sql = MIGRATION.read_text().replace("rekisteri_audit_eraser", role)
        schemas = [f"concurrent_{attempt}_{i}" for i in range(8)]
        conns = [await asyncpg.connect(database_url) for _ in schemas]
        try:
            for conn, schema in zip(conns, schemas):
                await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema};"
                                   " CREATE TABLE audit_log (person_id uuid)")

            outcomes = await asyncio.gather(*(migrate(c, sql) for c in conns), return_exceptions=True)
            assert [o for o in outcomes if o is not None] == [], f"round {attempt}"
        finally:
            await conns[0].execute(f"DROP SCHEMA {', '.join(schemas)} CASCADE")
            await conns[0].execute(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")
            for conn in conns:
                await conn.close()


async def migrate(conn: asyncpg.Connection, sql: str) -> None:
    """As `shared.db.migrate` applies one file: in a transaction of its own."""
    async with conn.transaction():
        await conn.execute(sql)
