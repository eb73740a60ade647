"""One-time codes that verify the identity of a request made by email or phone (SPEC §10).
Pure: no I/O. The code goes to the person's own contact points through the mailer; the
register keeps only a salted SHA-256 of it, for ten minutes and five tries."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

CODE_DIGITS = 8
LIFETIME = timedelta(minutes=10)
TRIES = 5


class Outcome(StrEnum):
    verified = "verified"
    wrong = "wrong"
    expired = "expired"
    exhausted = "exhausted"


@dataclass(frozen=True)
class IssuedCode:
    code: str  # for the notification only: never stored
    salt: bytes
    digest: bytes
    expires_at: datetime


def digest(code: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + code.strip().encode()).digest()


def issue(now: datetime) -> IssuedCode:
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_bytes(16)
    return IssuedCode(code, salt, digest(code, salt), now + LIFETIME)


def check(given: str, *, salt: bytes, stored: bytes, expires_at: datetime, tries_left: int, now: datetime) -> Outcome:
    """Expired or out of tries first (a right guess then is still refused), then the comparison
    in constant time. The caller spends a try on every outcome but `verified`."""
    if tries_left <= 0:
        return Outcome.exhausted
    if now >= expires_at:
        return Outcome.expired
    return Outcome.verified if hmac.compare_digest(digest(given, salt), stored) else Outcome.wrong
