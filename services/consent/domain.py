"""Pure consent rules (R8, R13): normalising and hashing contact points, whether a ban may
be lifted, and the allow/deny decision of a check. No I/O."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from shared.web.auth import Role

DEFAULT_PHONE_REGION = "FI"
MAX_EMAIL_LENGTH = 254
_SHA256_BLOCK = 64
# One @, a dot in the domain, no whitespace: enough to hash what contacts would have stored.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Status(StrEnum):
    granted = "granted"
    banned = "banned"


class Reason(StrEnum):
    """Why a check came out as it did."""

    erased = "erased"  # the person was erased everywhere (R7): never market
    banned = "banned"  # the person banned this purpose and channel (R13)
    suppression_list = "suppression_list"  # the contact point is suppressed (R8)
    granted = "granted"  # the person permitted it
    no_ban = "no_ban"  # no ban recorded: B2B marketing to a legitimate connection (R1 P1)
    invalid_contact_point = "invalid_contact_point"


@dataclass(frozen=True)
class CheckOutcome:
    allowed: bool
    reason: Reason


def decide(*, erased: bool = False, banned: bool = False, suppressed: bool = False,
           granted: bool = False) -> CheckOutcome:
    """May we market to this target for one purpose and channel? A ban always wins."""
    if erased:
        return CheckOutcome(False, Reason.erased)
    if banned:
        return CheckOutcome(False, Reason.banned)
    if suppressed:
        return CheckOutcome(False, Reason.suppression_list)
    if granted:
        return CheckOutcome(True, Reason.granted)
    return CheckOutcome(True, Reason.no_ban)


INVALID = CheckOutcome(False, Reason.invalid_contact_point)


def normalise_email(value: str) -> str | None:
    """Lower-cased, trimmed email, the form contacts publishes; None if it cannot be one."""
    email = value.strip().lower()
    if _EMAIL.fullmatch(email) is None or len(email) > MAX_EMAIL_LENGTH:
        return None
    return email


def normalise_phone(value: str) -> str | None:
    """E.164, the form contacts publishes (Finnish numbers without a country code allowed)."""
    if value.startswith("+") and value[1:].isdigit() and 8 <= len(value) <= 16:
        return value  # already E.164: the hot path of batch checks
    try:
        parsed = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class ContactPointHasher:
    """Keyed hashes of normalised contact points (R8): the suppression list holds these,
    never the values, yet a check can still answer. HMAC-SHA256 (RFC 2104) with the key's
    inner and outer hash states computed once: batch checks hash 100,000 points."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._email, self._phone = inner.copy(), inner.copy()
        self._email.update(b"email:")
        self._phone.update(b"phone:")

    def _digest(self, inner_base: "hashlib._Hash", value: str) -> bytes:
        inner = inner_base.copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def email(self, normalised: str) -> bytes:
        return self._digest(self._email, normalised)

    def phone(self, normalised: str) -> bytes:
        return self._digest(self._phone, normalised)

    def emails(self, values: list[str]) -> list[bytes | None]:
        """Hash raw values; None where a value is not an email. (The hot loop, inlined.)"""
        out: list[bytes | None] = []
        append, base, outer_base, match = out.append, self._email, self._outer, _EMAIL.fullmatch
        for value in values:
            email = value.strip().lower()
            if match(email) is None or len(email) > MAX_EMAIL_LENGTH:
                append(None)
                continue
            inner = base.copy()
            inner.update(email.encode())
            outer = outer_base.copy()
            outer.update(inner.digest())
            append(outer.digest())
        return out

    def phones(self, values: list[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for value in values:
            phone = normalise_phone(value)
            out.append(None if phone is None else self.phone(phone))
        return out

    def contact_points(self, emails: list[str], phones: list[str]) -> list[tuple[bytes, str]]:
        """(digest, kind) for every valid contact point; invalid ones are skipped."""
        pairs = [(d, "email") for d in self.emails(emails) if d is not None]
        return pairs + [(d, "phone") for d in self.phones(phones) if d is not None]


def derive_suppression_key(configured: str, token_secret: str) -> bytes:
    """The configured key, or one derived from the token secret on the embedded stack."""
    if configured:
        return configured.encode()
    return hashlib.sha256(b"rekisteri-consent-suppression:" + token_secret.encode()).digest()


class Decision(StrEnum):
    grant = "grant"
    ban = "ban"
    withdraw = "withdraw"


def may_lift_ban(*, role: Role, actor_is_person: bool, method: str | None, notice_version: str | None) -> bool:
    """A later permission lifts a ban only when it comes from the person themselves, with
    evidence of how and under which notice text (R13)."""
    return role is Role.subject and actor_is_person and bool(method) and bool(notice_version)
