"""Envelope encryption of personal fields (SPEC §9): each person's fields are sealed with
that person's data key (AES-256-GCM), and data keys are stored only wrapped by a master key.
Destroying a person's data key makes every sealed copy unreadable at once: Kafka logs, outbox
rows, dead letters, backups (crypto-shredding).

`MasterKey` is the seam for a KMS or Vault transit: anything that wraps and unwraps a few
bytes under a named key will do; `LocalMasterKey` is the one in `REKISTERI_MASTER_KEY`.
"""
from __future__ import annotations

import base64
import hmac
import json
import os
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DATA_KEY_BYTES = 32
NONCE_BYTES = 12
FIELD_PREFIX = "rk1"  # version of the sealed-field format: rk1.<key id>.<base64url(nonce | ciphertext)>


class KeyDestroyed(Exception):
    """The person's data key was destroyed at erasure: treat the person as erased."""

    def __init__(self, person_id: uuid.UUID) -> None:
        super().__init__(f"data key of person {person_id} was destroyed")
        self.person_id = person_id


class KeyNotFound(LookupError):
    """No such data key was ever made (a sealed value from another register, or corrupt)."""


class KeyStoreUnavailable(Exception):
    """The key store could not be reached: retry later; never a reason to give up on an event."""


class UndecryptableValue(ValueError):
    """A sealed value that is malformed, tampered with, or sealed for another person or key."""


class MasterKey(Protocol):
    """Wraps data keys. `context` is bound to the wrapped key (authenticated, not secret)."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, plaintext: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


@dataclass(frozen=True)
class LocalMasterKey:
    """A master key held by the process itself (AES-256-GCM key wrapping)."""

    secret: bytes = field(repr=False)

    @cached_property
    def key_id(self) -> str:
        return "local:" + hmac.new(self.secret, b"rekisteri master key id", "sha256").hexdigest()[:8]

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.secret).encrypt(nonce, plaintext, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self.secret).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except InvalidTag:
            raise UndecryptableValue("a wrapped data key does not open under its master key") from None


class MasterKeys:
    """The current master key (wraps new data keys) and old ones (unwrap until re-wrapped)."""

    def __init__(self, current: MasterKey, old: Sequence[MasterKey] = ()) -> None:
        self.current = current
        self._by_id = {k.key_id: k for k in old}
        self._by_id[current.key_id] = current

    def get(self, key_id: str) -> MasterKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            raise UndecryptableValue(f"master key {key_id} is neither REKISTERI_MASTER_KEY"
                                     " nor in REKISTERI_MASTER_OLD_KEYS") from None


@dataclass(frozen=True)
class DataKey:
    """One person's data key, unwrapped (kept in memory only)."""

    person_id: uuid.UUID
    key_id: int
    secret: bytes = field(repr=False)
    # Whether the store read it as the person's newest key (None: not asked): a cache may then
    # seal with it too, without asking the store for the newest.
    newest: bool | None = field(default=None, compare=False)


def wrapping_context(person_id: uuid.UUID, key_id: int) -> bytes:
    """A wrapped key opens only as the key it was made for (no swapping rows between persons)."""
    return f"rekisteri/data-key/v1|{person_id}|{key_id}".encode()


def _field_context(person_id: uuid.UUID, key_id: int) -> bytes:
    return f"rekisteri/field/v1|{person_id}|{key_id}".encode()


def seal(key: DataKey, value: Any) -> str:
    """A JSON-able value sealed for `key`'s person: `rk1.<key id>.<base64url>`. The person id
    and key id are authenticated, so a value moved to another person does not open."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    ciphertext = AESGCM(key.secret).encrypt(nonce, plaintext, _field_context(key.person_id, key.key_id))
    return f"{FIELD_PREFIX}.{key.key_id}.{base64.urlsafe_b64encode(nonce + ciphertext).decode().rstrip('=')}"


def sealed_key_id(sealed: str) -> int:
    """Which of the person's data keys a sealed value needs."""
    prefix, _, rest = sealed.partition(".")
    key_id, _, _ = rest.partition(".")
    if prefix != FIELD_PREFIX or not key_id.isdigit():
        raise UndecryptableValue("not a sealed value")
    return int(key_id)


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(FIELD_PREFIX + ".")


def open_sealed(key: DataKey, sealed: str) -> Any:
    """The value `seal` sealed; `UndecryptableValue` if it was altered or is not for this key."""
    if sealed_key_id(sealed) != key.key_id:
        raise UndecryptableValue("sealed under another data key")
    body = sealed.split(".", 2)[2]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plaintext = AESGCM(key.secret).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                               _field_context(key.person_id, key.key_id))
    except (InvalidTag, ValueError):
        raise UndecryptableValue("a sealed value was altered or is not this person's") from None
    return json.loads(plaintext)


def new_data_key_secret() -> bytes:
    return AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
