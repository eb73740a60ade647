"""A suppression key rotation keeps every ban effective (SPEC §9, R8, R13): consent's check
says banned before the rotation, while `rekey` moves the digests, and after it, on the real
broker and database. The consent under test runs in a schema and consumer group of its own,
so the session's consent keeps its keys."""
from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass

import asyncpg
import httpx

from services.consent import api, handlers, storage
from services.consent.app import MIGRATIONS
from services.consent.settings import ConsentSettings
from shared.db import create_pool, migrate
from shared.messaging.events import Channel, OptoutRegistered, Purpose
from shared.ops import cli
from shared.privacy.config import suppression_keyring
from shared.privacy.digests import SuppressionKey
from shared.privacy.keys import generate_key, parse_key
from shared.privacy.rekey import SuppressionLists, rekey
from shared.runtime import ServiceRuntime
from shared.web.auth import Role
from shared.web.http import create_http_app
from tests.conftest import service_test_settings
from tests.helpers import ExternalSystem, auth, eventually
from tests.infra import create_database

SCHEMA = "consent_rotation"
MARKETING = auth(Role.marketing, user="marketer-rotation", audience=SCHEMA)  # the runtime is named after its schema
STAFF = auth(Role.register_user, user="staff-rotation", audience=SCHEMA)


@dataclass
class Consent:
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    async def stop(self) -> None:
        await self.http.aclose()
        await self.runtime.stop()

    async def banned(self, channel: str, **target: str) -> bool:
        r = await self.http.post("/checks", headers=MARKETING,
                                 json={"purpose": "direct_advertising", "channel": channel, **target})
        assert r.status_code == 200, r.text
        return r.json()["reason"] == "suppression_list"


async def start_consent(infra, database_url: str, key: str, old_keys: str = "") -> Consent:
    settings = ConsentSettings(**service_test_settings(
        infra, database_url, service_name=SCHEMA, rekisteri_suppression_key=key,
        rekisteri_suppression_old_keys=old_keys))
    runtime = ServiceRuntime(SCHEMA, settings, MIGRATIONS, storage)
    handlers.register(runtime)
    app = create_http_app(runtime, [api.router], description="consent under a key rotation")
    await runtime.start()
    return Consent(runtime, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://consent"))


def fresh_targets() -> list[tuple[str, str]]:
    national = "040" + "".join(random.choices("0123456789", k=7))
    return [("email", f"kierto.{uuid.uuid4().hex[:8]}@example.fi"), ("phone", f"+3580{national[1:]}"),
            ("phone", f"{national[:3]} {national[3:6]} {national[6:]}")]


async def all_banned(consent: Consent, targets: list[tuple[str, str]]) -> bool:
    return all([await consent.banned(kind, **{kind: value}) for kind, value in targets])


async def test_r8_a_suppression_key_rotation_keeps_every_ban_effective(infra, database_url):
    old_key, new_key = generate_key(), generate_key()
    old_id, new_id = SuppressionKey(parse_key("k", old_key)).id, SuppressionKey(parse_key("k", new_key)).id
    filed, during = fresh_targets(), fresh_targets()
    consent = await start_consent(infra, database_url, old_key)
    try:
        async with ExternalSystem(infra.bootstrap) as systems:  # a ban by event: the contact points only
            await systems.publish(OptoutRegistered(emails=[filed[0][1]], phones=[filed[1][1]],
                                                   purposes=[Purpose.direct_advertising], channels=list(Channel),
                                                   source="marketing-tool", method="unsubscribe_link"),
                                  source="marketing-tool")
        await eventually(lambda: all_banned(consent, filed))
        await consent.stop()

        # 1. every service restarts with the new key, the old one kept as an old key
        consent = await start_consent(infra, database_url, new_key, old_key)
        assert await all_banned(consent, filed)
        r = await consent.http.post("/optouts", headers=STAFF, json={  # a ban filed mid-rotation
            "emails": [during[0][1]], "phones": [during[1][1]], "purposes": ["direct_advertising"],
            "method": "phone_call"})
        assert r.status_code == 201, r.text
        assert await all_banned(consent, during)

        # 2. rekey, one digest a transaction, while checks keep coming
        conn = await asyncpg.connect(database_url, server_settings={"search_path": SCHEMA})
        try:
            lists = SuppressionLists(SCHEMA, storage.SUPPRESSION_LISTS.tables)
            task = asyncio.create_task(rekey([(conn, lists)], suppression_keyring(new_key, old_key),
                                             grace_s=consent.runtime.settings.suppression_chain_ttl_s + 0.5, batch=1))
            checks_during = 0
            while not task.done():
                assert await all_banned(consent, [*filed, *during]), "a ban lapsed while rekey ran"
                checks_during += 1
            [report] = await task
            assert report.chains_moved == [old_id] and report.digests_moved >= 4 and checks_during > 1
            assert {r[0] for r in await conn.fetch(
                "SELECT key_id FROM suppression_record UNION SELECT key_id FROM contact_point"
                " UNION SELECT chain FROM suppression_key_chain")} <= {new_id, f"{old_id}>{new_id}"}
        finally:
            await conn.close()

        # 3. after: still banned, by the running service and by one restarted after the rekey
        assert await all_banned(consent, [*filed, *during])
        await consent.stop()
        consent = await start_consent(infra, database_url, new_key, old_key)
        assert await all_banned(consent, [*filed, *during])
        assert not await consent.banned("email", email=f"other.{uuid.uuid4().hex[:8]}@example.fi")
    finally:
        await consent.stop()


async def test_rekey_command_moves_a_list_and_names_a_missing_old_key(infra, monkeypatch, capsys):
    """`rekisteri suppression rekey` on a database of its own: it re-keys consent's list, and
    without the old key it refuses, naming the variable."""
    database_url = await create_database(infra)
    old_key, new_key = generate_key(), generate_key()
    pool = await create_pool(database_url, "consent")
    try:
        await migrate(pool, "consent", MIGRATIONS)
        keyring = suppression_keyring(old_key)
        await pool.execute("INSERT INTO suppression_key_chain (chain) VALUES ($1)", keyring.current_chain)
        await pool.execute("INSERT INTO suppression_record (digest, key_id, purpose, channel, kind, source)"
                           " VALUES ($1, $2, 'direct_advertising', 'email', 'email', 'test')",
                           keyring.digest("email", "matti@example.fi"), keyring.current_chain)
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("REKISTERI_SUPPRESSION_KEY", new_key)
        monkeypatch.setenv("REKISTERI_SUPPRESSION_OLD_KEYS", "")
        assert await asyncio.to_thread(cli.main, ["suppression", "rekey", "--grace", "0"]) == 2  # old key missing
        assert "REKISTERI_SUPPRESSION_OLD_KEYS" in capsys.readouterr().err
        monkeypatch.setenv("REKISTERI_SUPPRESSION_OLD_KEYS", old_key)
        assert await asyncio.to_thread(cli.main, ["suppression", "rekey", "--grace", "0"]) == 0
        assert '"digests_moved": 1' in capsys.readouterr().out
        rekeyed = suppression_keyring(new_key, old_key)
        chain = rekeyed.extended(keyring.current_chain)
        assert await pool.fetchval("SELECT key_id FROM suppression_record WHERE digest = $1",
                                   rekeyed.digest("email", "matti@example.fi", chain)) == chain
        assert await pool.fetchval("SELECT count(*) FROM suppression_record WHERE key_id = $1",
                                   keyring.current_chain) == 0
    finally:
        await pool.close()
