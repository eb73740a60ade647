"""Staff accounts of the portal (SPEC §7: staff sign in with local accounts): argon2id
password hashes, a role, optional TOTP, lockout after repeated failures, disabling.

Managed with `rekisteri staff add|disable|list`; the portal only verifies them. Hashing is
`shared.passwords.Passwords`, the same as contacts' self-service accounts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from typing import Any

import asyncpg
import pyotp

from shared.passwords import Passwords


STAFF_ROLES = ("register_owner", "register_user", "marketing", "billing")
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 12


class AccountError(ValueError):
    """An operator's mistake managing accounts (unknown role, short password, taken name)."""


@dataclass(frozen=True)
class SignInOutcome:
    """`role` when the sign-in succeeded; otherwise `reason` says why (never which part was wrong)."""

    role: str | None
    reason: str | None = None  # "wrong_credentials" | "locked" | "totp_required"


def totp_ok(secret: str | None, code: str | None, now: datetime | None = None) -> bool:
    """No TOTP configured, or the code is valid now (one 30 s step of drift either way)."""
    if not secret:
        return True
    if not code:
        return False
    return pyotp.TOTP(secret).verify(code.strip().replace(" ", ""), for_time=now, valid_window=1)


async def add_staff(conn: asyncpg.Connection, passwords: Passwords, username: str, role: str, password: str,
                    *, with_totp: bool = False) -> str | None:
    """Create an account; returns the TOTP secret when one was made (shown once to the operator)."""
    if role not in STAFF_ROLES:
        raise AccountError(f"role must be one of {', '.join(STAFF_ROLES)}")
    if not 3 <= len(username) <= 100 or not all(c.isalnum() or c in "._@-" for c in username):
        raise AccountError("username: 3 to 100 letters, digits or . _ @ -")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    secret = pyotp.random_base32() if with_totp else None
    try:
        await conn.execute("INSERT INTO staff_accounts (username, role, password_hash, totp_secret)"
                           " VALUES ($1, $2, $3, $4)", username, role, await passwords.hash(password), secret)
    except asyncpg.UniqueViolationError:
        raise AccountError("username: an account with this name exists") from None
    return secret


async def disable_staff(conn: asyncpg.Connection, username: str) -> None:
    """Disable the account and end its sessions at once."""
    done = await conn.execute("UPDATE staff_accounts SET disabled_at = now() WHERE username = $1"
                              " AND disabled_at IS NULL", username)
    if done.endswith(" 0"):
        raise AccountError("username: no enabled account with this name")
    await conn.execute("DELETE FROM web_sessions WHERE kind = 'staff' AND username = $1", username)


async def list_staff(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT username, role, totp_secret IS NOT NULL AS totp, disabled_at, created_at"
                            " FROM staff_accounts ORDER BY username")
    return [dict(r) for r in rows]


async def sign_in(pool: asyncpg.Pool, passwords: Passwords, username: str, password: str, totp_code: str | None,
                  now: datetime | None = None) -> SignInOutcome:
    """Check a staff member's credentials; failures are counted and lock the account."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        account = await conn.fetchrow("SELECT * FROM staff_accounts WHERE username = $1 AND disabled_at IS NULL"
                                      " FOR UPDATE", username)
        ok = await passwords.verify(account["password_hash"] if account else None, password)
        if account is None:
            return SignInOutcome(None, "wrong_credentials")
        if account["locked_until"] is not None and account["locked_until"] > now:
            return SignInOutcome(None, "locked")
        if ok and account["totp_secret"] and not totp_code:
            return SignInOutcome(None, "totp_required")
        if ok and totp_ok(account["totp_secret"], totp_code, now):
            await conn.execute("UPDATE staff_accounts SET failed_attempts = 0, locked_until = NULL"
                               " WHERE username = $1", username)
            return SignInOutcome(account["role"])
        failed = account["failed_attempts"] + 1
        locked_until = now + LOCKOUT if failed >= MAX_FAILURES else None
        await conn.execute("UPDATE staff_accounts SET failed_attempts = $2, locked_until = $3 WHERE username = $1",
                           username, 0 if locked_until else failed, locked_until)
        return SignInOutcome(None, "locked" if locked_until else "wrong_credentials")
