"""Finding 5 (issue 16): denials cannot deadlock the pool. A denial's audit row goes through
a small pool of its own while the route holds its connection, and every acquire times out
(`DB_ACQUIRE_TIMEOUT_S`) instead of waiting forever (SPEC §5: denials are logged)."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.security.conftest import OWNER, USER


async def test_twenty_concurrent_denied_reads_on_a_pool_of_two_are_all_answered(database_only_app):
    app, client = await database_only_app("contacts", db_pool_max=2, db_acquire_timeout_s=20)
    created = await client.post("/persons", headers=OWNER, json={
        "first_name": "Passiivi", "last_name": "Henkilö", "legal_basis": "assignment", "purposes": ["assignments"]})
    pid = created.json()["person"]["id"]
    pool = app.state.runtime.pool
    await pool.execute("UPDATE persons SET lifecycle_state = 'passive' WHERE id = $1::uuid", pid)
    started = time.monotonic()
    answers = await asyncio.wait_for(
        asyncio.gather(*(client.get(f"/persons/{pid}", headers=USER) for _ in range(20))), timeout=30)
    assert [a.status_code for a in answers] == [403] * 20
    assert time.monotonic() - started < 15
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE person_id = $1::uuid AND outcome = 'denied'",
                               pid) == 20


async def test_a_pool_acquire_gives_up_after_the_configured_timeout(database_only_app):
    app, _client = await database_only_app("contacts", db_pool_max=2, db_acquire_timeout_s=0.5)
    pool = app.state.runtime.pool
    held = [await pool.acquire(), await pool.acquire()]
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=10)
        assert time.monotonic() - started < 5
    finally:
        for conn in held:
            await pool.release(conn)
