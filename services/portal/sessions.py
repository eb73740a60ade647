"""Web sign-in sessions: a random cookie value whose SHA-256 names the row in PostgreSQL,
an idle timeout and a maximum age, and the double-submit CSRF token every form carries.

Cookies are Secure, HttpOnly and SameSite; the session row holds no personal data of a data
subject (only their person id) and no bearer token."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from typing import Any, Literal

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "rk_session"
CSRF_COOKIE = "rk_csrf"
LANG_COOKIE = "rk_lang"
# last_seen_at is written at most this often: a page view should not always cost a write.
TOUCH_EVERY = timedelta(seconds=20)


@dataclass
class WebSession:
    kind: str  # "staff" | "subject"
    username: str
    role: str
    person_id: uuid.UUID | None = None
    data: dict[str, Any] = field(default_factory=dict)
    digest: bytes = b""

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _now() -> datetime:
    return datetime.now(UTC)


async def open_session(pool: asyncpg.Pool, session: WebSession, max_age_s: int) -> str:
    """Store a new session; returns the cookie value (never stored itself)."""
    value = secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO web_sessions (id_digest, kind, username, role, person_id, data, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        _digest(value), session.kind, session.username, session.role, session.person_id, session.data, _now() + timedelta(seconds=max_age_s))
    await pool.execute("DELETE FROM web_sessions WHERE expires_at < now()")
    return value


async def load_session(pool: asyncpg.Pool, cookie: str | None, idle_timeout_s: int) -> tuple[WebSession | None, bool]:
    """The session named by the cookie, or None; the flag says it existed but timed out."""
    if not cookie:
        return None, False
    digest = _digest(cookie)
    row = await pool.fetchrow("SELECT * FROM web_sessions WHERE id_digest = $1", digest)
    if row is None:
        return None, False
    now = _now()
    if row["expires_at"] <= now or now - row["last_seen_at"] > timedelta(seconds=idle_timeout_s):
        await pool.execute("DELETE FROM web_sessions WHERE id_digest = $1", digest)
        return None, True
    if now - row["last_seen_at"] > TOUCH_EVERY:
        await pool.execute("UPDATE web_sessions SET last_seen_at = $2 WHERE id_digest = $1", digest, now)
    return WebSession(kind=row["kind"], username=row["username"], role=row["role"], person_id=row["person_id"],
                      data=row["data"] or {}, digest=digest), False


async def save_data(pool: asyncpg.Pool, session: WebSession) -> None:
    await pool.execute("UPDATE web_sessions SET data = $2 WHERE id_digest = $1", session.digest, session.data)


async def close_session(pool: asyncpg.Pool, cookie: str | None) -> None:
    if cookie:
        await pool.execute("DELETE FROM web_sessions WHERE id_digest = $1", _digest(cookie))


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None,
               samesite: Literal["lax", "strict", "none"] = "lax") -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, secure=secure, samesite=samesite, path="/")


def csrf_token(request: Request) -> str:
    """This visitor's CSRF token: the cookie's, or a new one the response will set."""
    token = getattr(request.state, "new_csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def csrf_valid(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted and hmac.compare_digest(cookie, submitted))


def rotate_csrf(request: Request) -> str:
    """A fresh token at sign-in and sign-out, so one seen before cannot be replayed."""
    request.state.new_csrf = secrets.token_urlsafe(24)
    return request.state.new_csrf
