"""Backups that forget too (issue 15 part 4, SPEC §9), on the real broker and database.

All four services run in-process on a broker and a database of their own (a restore drops
and recreates every schema of its database). A backup is taken, a person erased, the
services stopped and the backup restored: the erasure ledger, kept outside the backup, has
every service erase the person again before any of them starts, and afterwards no table
holds a personal value of theirs, in plain or as bytes.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.messaging.events import DispositionCommanded
from shared.ops.backup import libpq_args, read_info
from shared.ops.cli import main
from shared.ops.stack import postgres_bin_dir
from shared.runtime import ServiceRuntime
from shared.settings import SERVICE_NAMES, ServiceSettings
from shared.web.auth import Role
from tests.conftest import service_test_settings
from tests.helpers import ExternalSystem, auth, eventually
from tests.infra import create_database
from tests.integration.test_fuzz_isolated import (
    isolated_settings,
    start_isolated,
)

STAFF = auth(Role.register_user, user="backup-restore")
OWNER = auth(Role.register_owner, user="backup-restore")


async def _cli(monkeypatch, database_url: str, *argv: str) -> int:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return await asyncio.to_thread(main, list(argv))


async def _whole_database_text(database_url: str) -> str:
    """A plain pg_dump of every schema (the erasure ledger too): what a new backup would hold."""
    url, env = libpq_args(database_url)
    proc = await asyncio.create_subprocess_exec(str(postgres_bin_dir() / "pg_dump"), "--format=plain", f"--dbname={url}",
                                                stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


def _leaks(text: str, values: list[str]) -> list[str]:
    """Values found as text, or as the hex of their bytes (bytea columns dump as hex)."""
    lowered = text.lower()
    return [v for v in values if v.lower() in lowered or v.encode().hex() in lowered]


async def _register_person(contacts: httpx.AsyncClient, tag: str, phones: list[str]) -> tuple[uuid.UUID, list[str]]:
    values = [f"Varmuus{tag}x", f"Kopio{tag}x", f"backup-{tag}@example.fi", f"toinen-{tag}@example.fi"]
    resp = await contacts.post("/persons", headers=STAFF, json={
        "first_name": values[0], "last_name": values[1], "emails": values[2:4], "phones": phones,
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting"})
    assert resp.status_code == 201, resp.text
    person_id = uuid.UUID(resp.json()["person"]["id"])
    await contacts.post(f"/persons/{person_id}/relationships", headers=STAFF, json={"kind": "customer"})
    rel = (await contacts.get(f"/persons/{person_id}", headers=STAFF)).json()["relationships"][0]["id"]
    assert (await contacts.post(f"/relationships/{rel}/end", headers=STAFF, json={})).status_code == 200
    return person_id, [*values, *phones, "0401234567", "0501234568"]


async def test_restore_erases_again_everyone_erased_after_the_backup(infra, private_tmp, monkeypatch, capsys):
    """SPEC §9, issue 15: back up, erase a person, restore: the person is gone again, in every
    service and the key store, before any service starts, and no personal value is left."""
    iso, broker = await start_isolated(infra, private_tmp)
    tag = uuid.uuid4().hex[:8]
    try:
        person_id, values = await _register_person(iso.http["contacts"], tag, ["+358401234567", "+358501234568"])
        kept_id, kept_values = await _register_person(iso.http["contacts"], uuid.uuid4().hex[:8],
                                                      ["+358401112223", "+358501112224"])
        consent, retention = iso.runtime("consent").pool, iso.runtime("retention").pool
        for pid in (person_id, kept_id):
            await eventually(lambda pid=pid: consent.fetchval("SELECT count(*) > 0 FROM contact_point WHERE person_id = $1", pid))
            await eventually(lambda pid=pid: retention.fetchval("SELECT true FROM persons WHERE person_id = $1", pid))

        backup_file = private_tmp / "register.backup"
        assert await _cli(monkeypatch, iso.database_url, "backup", str(backup_file)) == 0
        info = read_info(backup_file)
        assert {"contacts", "consent", "retention", "billing", "keystore"} <= set(info.schemas)
        assert "erasure_ledger" not in info.schemas

        async with ExternalSystem(iso.bootstrap) as sender:
            await sender.publish(DispositionCommanded(command_id=uuid.uuid4(), person_id=person_id, action="erase",
                                                      basis="test"), source="retention")
        contacts = iso.runtime("contacts").pool
        await eventually(lambda: contacts.fetchval("SELECT true FROM erased_persons WHERE person_id = $1", person_id))
        await eventually(lambda: consent.fetchval("SELECT true FROM erased_person WHERE person_id = $1", person_id))
        await eventually(lambda: retention.fetchval("SELECT true FROM disposed_persons WHERE person_id = $1", person_id))
        assert await contacts.fetchval("SELECT true FROM erasure_ledger.erasure WHERE person_id = $1", person_id)
    finally:
        for name, app in iso.apps.items():
            await iso.http[name].aclose()
            if app.state.runtime.started:
                await app.state.runtime.stop()

    capsys.readouterr()
    assert await _cli(monkeypatch, iso.database_url, "restore", str(backup_file)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The backup held the person in every service that keeps them; the ledger had them erased again.
    assert report["erased_since_backup"] == 1 and report["erasures"] == 1
    assert report["restored_persons_erased_again"]["contacts"] == 1
    assert report["restored_persons_erased_again"]["consent"] == 1
    assert report["restored_persons_erased_again"]["retention"] == 1

    conn = await asyncpg.connect(iso.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM contacts.persons WHERE id = $1", person_id) == 0
        assert await conn.fetchval("SELECT true FROM contacts.erased_persons WHERE person_id = $1", person_id)
        assert await conn.fetchval("SELECT true FROM consent.erased_person WHERE person_id = $1", person_id)
        assert await conn.fetchval("SELECT count(*) FROM consent.contact_point WHERE person_id = $1", person_id) == 0
        assert await conn.fetchval("SELECT count(*) FROM retention.persons WHERE person_id = $1", person_id) == 0
        assert await conn.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", person_id) == 0
        assert await conn.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1", person_id)
        assert await conn.fetchval("SELECT count(*) FROM erasure_ledger.restore_in_progress") == 0
        # The person not erased is back as the backup had them.
        assert await conn.fetchval("SELECT count(*) FROM contacts.persons WHERE id = $1", kept_id) == 1
    finally:
        await conn.close()
    text = await _whole_database_text(iso.database_url)
    assert _leaks(text, values) == []
    assert _leaks(text, kept_values[:4]) == kept_values[:4]  # the search itself finds what is there

    # The services start on the restored database (the restore finished) and agree.
    apps = {}
    try:
        for name in SERVICE_NAMES:
            module = importlib.import_module(f"services.{name}.app")
            apps[name] = module.build_app(isolated_settings(name, iso.bootstrap, iso.database_url, infra))
            await apps[name].state.runtime.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps["contacts"]), base_url="http://c") as http:
            assert (await http.get(f"/persons/{person_id}", headers=OWNER)).status_code in (404, 410)
            assert (await http.get(f"/persons/{kept_id}", headers=OWNER)).status_code == 200
    finally:
        for app in apps.values():
            if app.state.runtime.started:
                await app.state.runtime.stop()
        broker.stop()


async def test_a_service_refuses_to_start_while_a_restore_is_unfinished(infra):
    """SPEC §9: an interrupted restore has not yet erased everyone again; nothing may serve it."""
    database_url = await create_database(infra)
    schema = f"rstguard_{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(service_name=schema, **service_test_settings(infra, database_url))
    runtime = ServiceRuntime(schema, settings, None)
    await runtime.start()
    await runtime.pool.execute("INSERT INTO erasure_ledger.restore_in_progress (backup) VALUES ('monday.backup')")
    await runtime.stop()
    with pytest.raises(RuntimeError, match="a restore of monday.backup is unfinished"):
        await ServiceRuntime(schema, settings, None).start()


async def test_restore_refuses_while_services_are_connected(infra, monkeypatch, private_tmp):
    """The runbook's first step (docs/OPERATIONS.md): a restore under running services would
    race them; it names what is connected and changes nothing."""
    database_url = await create_database(infra)
    backup_file = private_tmp / "empty.backup"
    assert await _cli(monkeypatch, database_url, "backup", str(backup_file)) == 0
    held = await asyncpg.connect(database_url, server_settings={"application_name": "rekisteri-contacts"})
    try:
        assert await _cli(monkeypatch, database_url, "restore", str(backup_file)) == 2
    finally:
        await held.close()


def test_a_file_that_is_not_a_backup_is_an_operator_error(tmp_path: Path, monkeypatch):
    bogus = tmp_path / "not-a-backup"
    bogus.write_text("hello")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(Exception, match="not a rekisteri backup"):
        read_info(bogus)
