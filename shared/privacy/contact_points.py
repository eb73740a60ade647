"""The register's one normal form of a contact point (SPEC §9, R3, R8): what contacts stores,
what consent hashes and checks, what every import and event is read as. Two services that
disagree on a form let a ban filed in one form be reported allowed in the other.

Both functions cap the length before any parsing, so an over-long value costs nothing, and
neither uses a regular expression that can backtrack.
"""
from __future__ import annotations

import re
import unicodedata

import phonenumbers

MAX_EMAIL_LENGTH = 254  # RFC 5321's path limit
MAX_EMAIL_LOCAL_PART = 64
MAX_PHONE_LENGTH = 32
DEFAULT_PHONE_REGION = "FI"
# What a written phone number may hold once full-width forms are mapped to ASCII (NFKC).
_WHITESPACE = re.compile(r"\s")  # one character class: linear, nothing to backtrack
_PHONE_CHARACTERS = frozenset("0123456789+-(). ")


class InvalidContactPoint(ValueError):
    """A value that is not an email or phone number; the message names the rule, never the value."""


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased: one @, a local part of 1-64 characters, a domain with a dot
    followed by at least two characters, no whitespace, at most 254 characters in all."""
    email, broken_rule = _email_and_broken_rule(value)
    if broken_rule:
        raise InvalidContactPoint(broken_rule)
    return email


def _email_and_broken_rule(value: str) -> tuple[str, str | None]:
    if len(value) > MAX_EMAIL_LENGTH * 4:  # before strip(): a huge value is never even copied
        return "", "an email address is at most 254 characters"
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        return "", "an email address is at most 254 characters"
    local, at, domain = email.partition("@")
    if not at or "@" in domain:
        return "", "an email address has exactly one @"
    if not 1 <= len(local) <= MAX_EMAIL_LOCAL_PART:
        return "", "an email address has 1-64 characters before the @"
    if "." not in domain[1:-2]:
        return "", "an email domain has a dot followed by at least two characters"
    if _WHITESPACE.search(email) is not None:
        return "", "an email address has no whitespace"
    return email, None


def normalise_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """E.164 (`+358401234567`): national numbers are read as Finnish, a trunk 0 after the
    country code is dropped (`+3580401234567`), full-width digits count as their ASCII forms
    and any other non-ASCII digit is refused; at most 32 characters as written."""
    if len(value) > MAX_PHONE_LENGTH * 4:  # NFKC never shrinks a string by more than this
        raise InvalidContactPoint("a phone number is at most 32 characters")
    written = unicodedata.normalize("NFKC", value).strip()
    if len(written) > MAX_PHONE_LENGTH:
        raise InvalidContactPoint("a phone number is at most 32 characters")
    if not _PHONE_CHARACTERS.issuperset(written):
        raise InvalidContactPoint("a phone number has only ASCII digits, spaces, +, -, ( ) and .")
    try:
        number = phonenumbers.parse(written, region)
    except phonenumbers.NumberParseException:
        raise InvalidContactPoint("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContactPoint("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_or_none(value: str) -> str | None:
    """`normalise_email`, with None for what is not an email (checks answer those as invalid;
    no exception per invalid entry of a 100,000-entry campaign list)."""
    email, broken_rule = _email_and_broken_rule(value)
    return None if broken_rule else email


def phone_or_none(value: str) -> str | None:
    """`normalise_phone`, with None for what is not a phone number."""
    try:
        return normalise_phone(value)
    except InvalidContactPoint:
        return None
