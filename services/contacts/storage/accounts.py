"""Self-service accounts: credentials, activation, lockout, token versions (R11)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any



from services.contacts.storage.common import Conn, _row


# ---- accounts (R11) ---------------------------------------------------------------------

async def insert_account(conn: Conn, person_id: uuid.UUID, username: str, nickname: str | None,
                         identifiers: dict[str, str], code_hash: str, code_expires_at: datetime) -> None:
    """An account without a password: the person sets it with the activation code."""
    await conn.execute(
        "INSERT INTO accounts (person_id, username, nickname, identifiers, activation_code_hash,"
        " activation_expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        person_id, username, nickname, identifiers, code_hash, code_expires_at)


async def account_by_username(conn: Conn, username: str) -> dict[str, Any] | None:
    """Read without a lock: the slow hash is checked outside any transaction."""
    return _row(await conn.fetchrow(
        "SELECT a.*, p.lifecycle_state FROM accounts a JOIN persons p ON p.id = a.person_id"
        " WHERE a.username = $1", username))


async def account_of(conn: Conn, person_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT * FROM accounts WHERE person_id = $1{lock}", person_id))


async def set_login_failures(conn: Conn, person_id: uuid.UUID, failed: int, locked_until: datetime | None) -> None:
    await conn.execute("UPDATE accounts SET failed_attempts = $2, locked_until = $3 WHERE person_id = $1",
                       person_id, failed, locked_until)


async def set_password_hash(conn: Conn, person_id: uuid.UUID, password_hash: str, *, revoke_tokens: bool = True
                            ) -> int:
    """A new password; earlier tokens die with it (the token version moves on)."""
    return await conn.fetchval(
        "UPDATE accounts SET password_hash = $2, password_changed_at = now(), failed_attempts = 0,"
        " locked_until = NULL, activation_code_hash = NULL, activation_expires_at = NULL,"
        " activated_at = coalesce(activated_at, now()),"
        " token_version = token_version + CASE WHEN $3 THEN 1 ELSE 0 END"
        " WHERE person_id = $1 RETURNING token_version", person_id, password_hash, revoke_tokens)


async def disable_account(conn: Conn, person_id: uuid.UUID) -> bool:
    status = await conn.execute("UPDATE accounts SET disabled_at = now(), token_version = token_version + 1"
                                " WHERE person_id = $1 AND disabled_at IS NULL", person_id)
    return status.endswith(" 1")


async def token_state(conn: Conn, person_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow("SELECT token_version, disabled_at FROM accounts WHERE person_id = $1",
                                    person_id))
