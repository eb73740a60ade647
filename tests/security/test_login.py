"""Finding 6 (issue 16; R11): login answers the same and does the same work for an unknown
username, a wrong password and a locked account; lockout is an exponential, capped delay that
failures during it do not extend; rate limits per IP and per username answer 429 with
Retry-After; argon2 runs outside the transaction and without the row lock; `/me/password`
enforces the lockout."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, UTC

import asyncpg

from services.contacts import domain
from tests.helpers import open_account
from tests.security.conftest import USER, new_person

PASSWORD = "correct horse battery"


async def account(contacts) -> tuple[uuid.UUID, str]:
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    assert (await open_account(contacts.http, pid, username, PASSWORD, USER)).status_code == 200
    return pid, username


async def login(contacts, username: str, password: str = PASSWORD):
    return await contacts.http.post("/auth/login", json={"username": username, "password": password})


class CountingPasswords:
    """Wraps the app's hasher, counting the slow verifications."""

    def __init__(self, inner) -> None:
        self.inner, self.verified = inner, 0

    async def verify(self, password_hash, password):
        self.verified += 1
        return await self.inner.verify(password_hash, password)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_unknown_wrong_and_locked_answer_the_same_after_the_same_work(contacts):
    _pid, username = await account(contacts)
    locked_pid, locked_name = await account(contacts)
    await contacts.runtime.pool.execute(
        "UPDATE accounts SET locked_until = now() + interval '10 minutes' WHERE person_id = $1", locked_pid)
    original = contacts.app.state.passwords
    counting = contacts.app.state.passwords = CountingPasswords(original)
    try:
        answers = []
        for name, password in ((f"nobody-{uuid.uuid4().hex[:6]}", PASSWORD), (username, "wrong password!"),
                               (locked_name, PASSWORD)):
            before = counting.verified
            resp = await login(contacts, name, password)
            answers.append((resp.status_code, resp.json(), counting.verified - before))
    finally:
        contacts.app.state.passwords = original
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401 and answers[0][2] == 1


def test_the_lockout_delay_grows_exponentially_and_is_capped():
    assert domain.lockout_after(4) is None
    assert domain.lockout_after(5) == timedelta(seconds=30)
    assert domain.lockout_after(6) == timedelta(seconds=60)
    assert domain.lockout_after(7) == timedelta(seconds=120)
    assert domain.lockout_after(10_000) == timedelta(minutes=15)


async def test_failures_during_a_lockout_neither_count_nor_extend_it(contacts):
    pid, username = await account(contacts)
    for _ in range(5):
        assert (await login(contacts, username, "wrong password!")).status_code == 401
    first = await contacts.runtime.pool.fetchrow(
        "SELECT failed_attempts, locked_until FROM accounts WHERE person_id = $1", pid)
    assert first["failed_attempts"] == 5 and first["locked_until"] is not None
    for _ in range(5):
        assert (await login(contacts, username, "wrong password!")).status_code == 401
    after = await contacts.runtime.pool.fetchrow(
        "SELECT failed_attempts, locked_until FROM accounts WHERE person_id = $1", pid)
    assert dict(after) == dict(first)
    assert first["locked_until"] - datetime.now(UTC) <= timedelta(minutes=15)


async def test_rate_limits_per_address_and_per_username_answer_429_with_retry_after(contacts):
    from services.contacts.selfservice import LoginLimits

    _pid, username = await account(contacts)
    settings = contacts.runtime.settings.model_copy(update={
        "login_burst_per_ip": 100, "login_per_minute_per_ip": 1, "login_burst_per_username": 3,
        "login_per_minute_per_username": 1})
    original = getattr(contacts.app.state, "login_limits", None)
    contacts.app.state.login_limits = LoginLimits(settings)
    try:
        codes = [(await login(contacts, username, "wrong password!")).status_code for _ in range(3)]
        limited = await login(contacts, username)
        assert codes == [401, 401, 401] and limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        other = await login(contacts, f"someone-{uuid.uuid4().hex[:6]}", "x")
        assert other.status_code == 401  # another username still has its own bucket
        contacts.app.state.login_limits = LoginLimits(settings.model_copy(update={"login_burst_per_ip": 2}))
        assert [(await login(contacts, f"n-{i}-{uuid.uuid4().hex[:6]}", "x")).status_code
                for i in range(3)] == [401, 401, 429]
    finally:
        contacts.app.state.login_limits = original


async def test_argon2_runs_without_the_row_lock_or_a_transaction(contacts):
    pid, username = await account(contacts)
    original = contacts.app.state.passwords
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(CountingPasswords):
        async def verify(self, password_hash, password):
            entered.set()
            await release.wait()
            return await self.inner.verify(password_hash, password)

    contacts.app.state.passwords = Slow(original)
    try:
        attempt = asyncio.create_task(login(contacts, username))
        await asyncio.wait_for(entered.wait(), 10)
        async with contacts.runtime.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute("SELECT 1 FROM accounts WHERE person_id = $1 FOR UPDATE NOWAIT", pid)
                row_free = True
            except asyncpg.LockNotAvailableError:
                row_free = False
        release.set()
        assert (await attempt).status_code == 200
    finally:
        release.set()
        contacts.app.state.passwords = original
    assert row_free


async def test_a_password_change_waits_out_the_lockout(contacts):
    pid, username = await account(contacts)
    token = (await login(contacts, username)).json()["token"]
    before = await contacts.runtime.pool.fetchval(
        "UPDATE accounts SET locked_until = now() + interval '10 minutes' WHERE person_id = $1"
        " RETURNING password_hash", pid)
    resp = await contacts.http.post("/me/password", headers={"Authorization": f"Bearer {token}"},
                                    json={"current_password": PASSWORD, "new_password": "another long password"})
    assert resp.status_code == 423
    assert await contacts.runtime.pool.fetchval("SELECT password_hash FROM accounts WHERE person_id = $1",
                                                pid) == before
    assert (await login(contacts, username, "another long password")).status_code == 401
