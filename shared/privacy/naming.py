"""Whom a dead letter names, kept only as keyed digests (issue 15, SPEC §9).

A dead letter holds raw bytes that may be anything: invalid JSON, an external system's event
with an email or phone in plain. So that erasure can find a person's dead letters without the
register keeping their contact points, `named_in` reads every UUID, email address and phone
number out of the bytes (normalised by `contact_points`, the one normal form), and
`NamingDigests` turns them into keyed digests: HMAC-SHA256 under the suppression keys, the
same digest the suppression list and consent's `contact_point` keep for an email or phone
(`<key id>:<hex>`), and `person:`-prefixed for an id. No unkeyed hash of anything.

A digest made before a suppression-key rotation is found while the old key is listed in
REKISTERI_SUPPRESSION_OLD_KEYS (`tokens` computes under every key the ring knows); dead
letters live DEAD_LETTER_RETENTION_DAYS, so keep an old key listed at least that long.
"""
from __future__ import annotations

import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from shared.privacy.contact_points import email_or_none, phone_or_none
from shared.privacy.digests import CHAIN_SEPARATOR, SuppressionKey, SuppressionKeyring

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A run of what a written phone number may hold: one character class, so no backtracking.
_PHONE_RUN = re.compile(r"[0-9+\-(). ]+")
# Characters that end an email address in text, JSON, URLs and markup (split on, not matched).
_EMAIL_BREAKS = str.maketrans({c: " " for c in "\"'<>,;:()[]{}\\/|`=\t\r\n"})
MAX_PHONE_PARTS = 5  # "+358 (0)40 123 45 67": how many space-separated groups one number spans
MAX_POINTS = 10_000  # per dead letter: what a hostile 1 MB message may cost to index
MAX_PHONE_TRIES = 5_000  # phone candidates parsed per dead letter (up to ~0.1 ms each)


@dataclass
class Named:
    """What a message names: person (or other) ids, normalised emails and phones."""

    ids: set[uuid.UUID] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    phone_tries: int = 0

    def __len__(self) -> int:
        return len(self.ids) + len(self.emails) + len(self.phones)


def named_in(raw: bytes, key: bytes | None = None) -> Named:
    """Every UUID, email and phone in the message (its key too), whatever the bytes are: the
    text as it is, and, when it is JSON, every string and name of the document (escapes read)."""
    found = Named()
    for text in _texts(raw, key):
        _collect(unicodedata.normalize("NFKC", text), found)
        if len(found) >= MAX_POINTS:
            break
    return found


def _texts(raw: bytes, key: bytes | None) -> Iterator[str]:
    text = raw.decode("utf-8", errors="replace")
    yield text
    if key:
        yield key.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        return
    yield from _strings(document)


def _strings(value: Any) -> Iterator[str]:
    """Every string of a JSON document, nested at any depth (names too), without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item


def _collect(text: str, found: Named) -> None:
    found.ids |= {uuid.UUID(m) for m in _UUID.findall(text)}
    for token in text.translate(_EMAIL_BREAKS).split():
        if "@" in token and (email := email_or_none(token.strip("."))) is not None:
            found.emails.add(email)
    for run in _PHONE_RUN.findall(_UUID.sub(" ", text)):
        for candidate in _phone_candidates(run):
            found.phone_tries += 1
            if (phone := phone_or_none(candidate)) is not None:
                found.phones.add(phone)
        if len(found) >= MAX_POINTS or found.phone_tries >= MAX_PHONE_TRIES:
            return


def _phone_candidates(run: str) -> Iterator[str]:
    """The run itself and every group of up to MAX_PHONE_PARTS of its space-separated parts
    (two numbers written one after the other), each with 6-15 digits and at most 32 characters."""
    parts = run.split()
    seen = set()
    for start in range(len(parts)):
        for end in range(start + 1, min(len(parts), start + MAX_PHONE_PARTS) + 1):
            candidate = " ".join(parts[start:end])
            digits = sum(c.isdigit() for c in candidate)
            if len(candidate) > 32 or digits > 15:
                break
            if digits >= 6 and candidate not in seen:
                seen.add(candidate)
                yield candidate


def _hmac(key: SuppressionKey, kind: str, value: str | bytes) -> str:
    """A token: the key's id and its digest of the value, as consent stores a single-key chain."""
    return f"{key.id}:{key.of(kind, value.encode() if isinstance(value, str) else value).hex()}"


class NamingDigests:
    """Keyed digests of what dead letters name, and of their bytes, under the suppression keys."""

    def __init__(self, keyring: SuppressionKeyring) -> None:
        self.keyring = keyring
        self._keys = [keyring.current, *(k for k in keyring.known_keys() if k.id != keyring.current.id)]

    def of_message(self, raw: bytes, key: bytes | None = None) -> list[str]:
        """What a new dead letter stores: the digest of each point it names, current key only."""
        named = named_in(raw, key)
        return sorted(self._of(self.keyring.current, named.ids, named.emails, named.phones))

    def tokens(self, person_ids: Iterable[uuid.UUID] = (), emails: Iterable[str] = (),
               phones: Iterable[str] = ()) -> list[str]:
        """What an erasure looks for: the digests of the person's id and raw contact points
        (normalised here) under every key the ring knows."""
        normal_emails = {e for e in (email_or_none(v) for v in emails) if e}
        normal_phones = {p for p in (phone_or_none(v) for v in phones) if p}
        ids = set(person_ids)
        return sorted({t for k in self._keys for t in self._of(k, ids, normal_emails, normal_phones)})

    def bytes_digest(self, raw: bytes) -> str:
        """A dead letter's dedupe key: keyed, so a message that is nothing but a phone number
        does not give it back (an unkeyed SHA-256 would)."""
        return _hmac(self.keyring.current, "dead-letter", raw)

    @staticmethod
    def _of(key: SuppressionKey, ids: Iterable[uuid.UUID], emails: Iterable[str], phones: Iterable[str]) -> set[str]:
        return ({_hmac(key, "person", str(i)) for i in ids} | {_hmac(key, "email", e) for e in emails}
                | {_hmac(key, "phone", p) for p in phones})


def stored_tokens(stored: Sequence[tuple[str, bytes]]) -> list[str]:
    """Tokens from digests a service keeps instead of the values (consent's `contact_point`:
    chain and digest). Only a single-key chain names a dead letter: a re-keyed (wrapped) digest
    is no longer the plain HMAC a dead letter was indexed with."""
    return sorted({f"{chain}:{digest.hex()}" for chain, digest in stored if CHAIN_SEPARATOR not in chain})
