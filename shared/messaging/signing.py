"""Commands between services are signed by their publisher (SPEC §9, issue 16).

Anyone who can write to the bus could otherwise send `disposition-commanded` and have a
person erased. Envelopes on the command topics carry an Ed25519 signature over their
canonical JSON (everything but the signature), made with the publishing service's private
key; every consumer verifies it with the public key configured for the envelope's `source`.
An unsigned or wrongly signed command is rejected (dead-lettered with the reason).

Keys come from the environment, read once per process:
- `REKISTERI_SIGNING_KEY`: this service's private key (base64 of the 32-byte Ed25519 seed);
- `REKISTERI_SIGNING_PUBLIC_KEYS`: JSON object, service name → base64 public key;
- or, on the embedded stack and in tests, `REKISTERI_SIGNING_KEYRING`: a JSON file of every
  service's seed (written by `rekisteri up`; `rekisteri keys generate` writes one too).
"""
from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.errors import Rejected
from shared.messaging.envelope import Envelope
from shared.settings import PlatformSettings

SIGNED_TOPICS = frozenset({
    "passivation-commanded", "disposition-commanded", "disposition-confirmed", "access-requested",
    "access-report-part", "erasure-requested",
})
SIGNING_SERVICES = ("contacts", "consent", "retention", "billing")


class SigningKeyError(ValueError):
    """Signing keys missing or malformed: a start-up error naming the variable."""


def canonical(body: dict[str, Any]) -> bytes:
    """What is signed: the envelope's JSON without its signature, sorted and compact, so the
    same bytes come out after the outbox (jsonb) and the broker whatever the key order."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _seed(value: str, variable: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise SigningKeyError(f"{variable} is not base64") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{variable} must be the base64 of a 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(raw)


class Keyring:
    """Private keys this process may sign with, and every publisher's public key."""

    def __init__(self, private: dict[str, Ed25519PrivateKey], public: dict[str, Ed25519PublicKey],
                 default_private: Ed25519PrivateKey | None = None) -> None:
        self._private = private
        self._public = public
        self._default = default_private

    @classmethod
    def from_env(cls) -> Keyring:
        settings = PlatformSettings()
        keyring_file = settings.rekisteri_signing_keyring
        if keyring_file:
            try:
                seeds = json.loads(Path(keyring_file).read_text())
            except (OSError, ValueError):
                raise SigningKeyError("REKISTERI_SIGNING_KEYRING does not name a readable JSON keyring") from None
            private = {name: _seed(seed, f"REKISTERI_SIGNING_KEYRING[{name}]") for name, seed in seeds.items()}
            return cls(private, {name: key.public_key() for name, key in private.items()})
        default = settings.rekisteri_signing_key
        public_json = settings.rekisteri_signing_public_keys
        try:
            public_raw = json.loads(public_json) if public_json else {}
            public = {name: Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
                      for name, value in public_raw.items()}
        except (ValueError, TypeError, AttributeError):
            raise SigningKeyError("REKISTERI_SIGNING_PUBLIC_KEYS must be a JSON object of service → base64 key") from None
        return cls({}, public, _seed(default, "REKISTERI_SIGNING_KEY") if default else None)

    def private_key(self, source: str) -> Ed25519PrivateKey | None:
        return self._private.get(source) or self._default

    def sign(self, envelope: Envelope) -> Envelope:
        """The envelope with its publisher's signature; unsigned if this process has no key for it."""
        key = self.private_key(envelope.source)
        if key is None:
            return envelope
        return envelope.model_copy(update={"signature": _b64(key.sign(canonical(envelope.to_json_dict())))})

    def verify(self, envelope: Envelope, raw: bytes) -> None:
        """Raise `Rejected` unless `raw` (the envelope as received) is signed by the key
        configured for its source."""
        if envelope.signature is None:
            raise Rejected(f"signature: a command on {envelope.type} must be signed by its publisher")
        public = self._public.get(envelope.source)
        if public is None:
            raise Rejected(f"signature: no public key is configured for source {envelope.source[:100]!r}")
        try:
            public.verify(base64.b64decode(envelope.signature, validate=True), canonical(json.loads(raw)))
        except (InvalidSignature, ValueError):
            raise Rejected("signature: does not verify with the publisher's public key") from None

    def require(self, service: str, consumed: Iterable[str]) -> None:
        """Start-up check: each of the register's services can sign the commands it publishes
        (every one confirms dispositions), and anything consuming commands can verify them."""
        if service in SIGNING_SERVICES and self.private_key(service) is None:
            raise SigningKeyError(f"REKISTERI_SIGNING_KEY (or REKISTERI_SIGNING_KEYRING) is not set: {service} "
                                  "signs the commands it publishes")
        if set(consumed) & SIGNED_TOPICS and not self._public:
            raise SigningKeyError("REKISTERI_SIGNING_PUBLIC_KEYS (or REKISTERI_SIGNING_KEYRING) is not set: "
                                  f"{service} verifies the commands it consumes")


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    """The process's keyring, read from the environment once."""
    return Keyring.from_env()


def generate_keyring(path: Path, services: Iterable[str] = SIGNING_SERVICES) -> Path:
    """Write a development keyring (a seed per service), readable by its owner only."""
    seeds = {name: _b64(Ed25519PrivateKey.generate().private_bytes_raw()) for name in services}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(seeds, indent=2))
    path.chmod(0o600)
    return path


def public_keys(path: Path) -> dict[str, str]:
    """The public half of a keyring file: what `REKISTERI_SIGNING_PUBLIC_KEYS` takes in production."""
    seeds = json.loads(path.read_text())
    return {name: _b64(_seed(seed, name).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            for name, seed in seeds.items()}
