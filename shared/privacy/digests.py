"""Keyed digests of contact points (R8, SPEC §9): what a suppression list keeps instead of an
email or phone, so a ban outlives the person's erasure without the register keeping the value.

HMAC-SHA256 under `REKISTERI_SUPPRESSION_KEY`, with the id of the key stored beside each digest.
An unkeyed hash would not do: every Finnish mobile number hashes in minutes.

Rotation. A digest cannot be recomputed under a new key once the value is gone (after erasure
nothing holds it), so re-keying wraps the stored digest: `HMAC(new, "rekey:" + digest)`. A
stored digest therefore carries a *chain* of key ids, innermost first (`"a1b2c3d4>e5f6a7b8"`),
and matching computes a value's digest under every chain still in use (the schema's
`suppression_key_chain` table). Once a list is re-keyed, reading it needs the new key: the
old keys are still needed to compute the inner layer but no longer protect anything alone.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Sequence

import asyncpg

from shared.privacy.contact_points import email_or_none, phone_or_none
from shared.privacy.keys import KeyConfigurationError

CHAIN_SEPARATOR = ">"
KINDS = ("email", "phone")
_REKEY_PREFIX = b"rekey:"


@dataclass(frozen=True)
class SuppressionKey:
    secret: bytes = field(repr=False)

    @cached_property
    def id(self) -> str:
        """A short public name of the key (it reveals nothing of the key)."""
        return hmac.new(self.secret, b"rekisteri suppression key id", "sha256").hexdigest()[:8]

    def of(self, kind: str, message: bytes) -> bytes:
        """HMAC-SHA256 of `kind:` + `message` under this key alone: a single-key chain's digest
        (`ContactPointDigests` computes the same from prepared states, for batches)."""
        return hmac.new(self.secret, f"{kind}:".encode() + message, "sha256").digest()


class _PreparedHmac:
    """HMAC-SHA256 (RFC 2104) of `prefix + message` under one key, the key's inner and outer
    hash states computed once; `hmac.HMAC.copy()` costs twice as much per message."""

    _BLOCK = 64

    def __init__(self, key: bytes, prefix: bytes) -> None:
        key = (hashlib.sha256(key).digest() if len(key) > self._BLOCK else key).ljust(self._BLOCK, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self.inner.update(prefix)
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, message: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class UnknownSuppressionKey(KeyConfigurationError):
    pass


class SuppressionKeyring:
    """The current suppression key and the old ones still needed to read stored chains."""

    def __init__(self, current: bytes, old: Sequence[bytes] = ()) -> None:
        self.current = SuppressionKey(current)
        self._by_id = {k.id: k for k in (SuppressionKey(o) for o in old)}
        self._by_id[self.current.id] = self.current

    @property
    def current_chain(self) -> str:
        return self.current.id

    def known_keys(self) -> list[SuppressionKey]:
        """The current key and every old one still listed (what a lookup tries)."""
        return list(self._by_id.values())

    def keys_of(self, chain: str) -> list[SuppressionKey]:
        try:
            return [self._by_id[key_id] for key_id in chain.split(CHAIN_SEPARATOR)]
        except KeyError:
            raise UnknownSuppressionKey(
                f"suppression key chain {chain} needs a key that is neither REKISTERI_SUPPRESSION_KEY"
                " nor in REKISTERI_SUPPRESSION_OLD_KEYS") from None

    def is_current(self, chain: str) -> bool:
        """Whether the outermost layer of a chain is the current key (nothing to re-key)."""
        return chain.rsplit(CHAIN_SEPARATOR, 1)[-1] == self.current.id

    def extended(self, chain: str) -> str:
        """The chain a digest gets when re-keyed onto the current key."""
        return chain if self.is_current(chain) else f"{chain}{CHAIN_SEPARATOR}{self.current.id}"

    def rewrap(self, digest: bytes) -> bytes:
        """One more layer under the current key (re-keying a stored digest)."""
        return hmac.new(self.current.secret, _REKEY_PREFIX + digest, "sha256").digest()

    def digest(self, kind: str, normalised: str, chain: str | None = None) -> bytes:
        """A normalised value's digest under one chain (the current key by default)."""
        return ContactPointDigests(self, [chain or self.current_chain]).of(kind, normalised)[0]


@dataclass(frozen=True)
class StoredDigest:
    digest: bytes
    kind: str
    chain: str


class ContactPointDigests:
    """Digests under a fixed set of live chains. Storing writes a point under every live
    chain and matching looks under every live chain, so a list half re-keyed still matches.
    The HMAC states are prepared once: a batch check digests 100,000 points."""

    def __init__(self, keyring: SuppressionKeyring, chains: Iterable[str]) -> None:
        self.keyring = keyring
        self.chains = tuple(dict.fromkeys(chains))
        self._bases: dict[str, list[tuple[_PreparedHmac, list[_PreparedHmac]]]] = {}
        for kind in KINDS:
            prepared = []
            for chain in self.chains:
                first, *rest = keyring.keys_of(chain)
                prepared.append((_PreparedHmac(first.secret, f"{kind}:".encode()),
                                 [_PreparedHmac(k.secret, _REKEY_PREFIX) for k in rest]))
            self._bases[kind] = prepared

    def of(self, kind: str, normalised: str) -> list[bytes]:
        """The value's digest under each live chain, in `chains` order."""
        value = normalised.encode()
        out = []
        for first, rest in self._bases[kind]:
            d = first(value)
            for layer in rest:
                d = layer(d)
            out.append(d)
        return out

    def emails(self, values: Sequence[str]) -> list[list[bytes] | None]:
        """Raw values normalised and digested under each chain; None where not an email."""
        return self._many("email", email_or_none, values)

    def phones(self, values: Sequence[str]) -> list[list[bytes] | None]:
        return self._many("phone", phone_or_none, values)

    def _many(self, kind: str, normalise: Callable[[str], str | None], values: Sequence[str]
              ) -> list[list[bytes] | None]:
        bases = self._bases[kind]
        if len(bases) != 1 or bases[0][1]:
            return [None if (v := normalise(value)) is None else self.of(kind, v) for value in values]
        first = bases[0][0]  # one chain of one key, the case outside a rotation: the hot loop, inlined
        inner_base, outer_base = first.inner, first.outer
        out: list[list[bytes] | None] = []
        append = out.append
        for value in values:
            normal = normalise(value)
            if normal is None:
                append(None)
                continue
            inner = inner_base.copy()
            inner.update(normal.encode())
            outer = outer_base.copy()
            outer.update(inner.digest())
            append([outer.digest()])
        return out

    def points(self, emails: Sequence[str], phones: Sequence[str]) -> list[StoredDigest]:
        """What to store for these raw contact points: each valid one under every live chain."""
        out = []
        for kind, digested in (("email", self.emails(emails)), ("phone", self.phones(phones))):
            for per_chain in digested:
                if per_chain is not None:
                    out += [StoredDigest(d, kind, c) for d, c in zip(per_chain, self.chains)]
        return out

    def tokens(self, emails: Sequence[str], phones: Sequence[str]) -> list[str]:
        """`chain:hex` strings for a text array column (the chain travels inside each element)."""
        return [f"{p.chain}:{p.digest.hex()}" for p in self.points(emails, phones)]


class SuppressionChains:
    """The chains in use in one schema (`suppression_key_chain`), re-read at most every
    `ttl_s`: `rekisteri suppression rekey` announces a new chain there and waits longer than
    that before it moves any digest onto it."""

    def __init__(self, keyring: SuppressionKeyring, ttl_s: float = 1.0) -> None:
        self.keyring = keyring
        self.ttl_s = ttl_s
        self._digests: ContactPointDigests | None = None
        self._read_at = float("-inf")
        self._registered = False

    async def digests(self, conn: asyncpg.Connection | asyncpg.Pool) -> ContactPointDigests:
        if self._digests is not None and time.monotonic() - self._read_at < self.ttl_s:
            return self._digests
        if not self._registered:
            await conn.execute("INSERT INTO suppression_key_chain (chain) VALUES ($1) ON CONFLICT DO NOTHING",
                               self.keyring.current_chain)
            self._registered = True
        chains = [r[0] for r in await conn.fetch("SELECT chain FROM suppression_key_chain ORDER BY chain")]
        if self.keyring.current_chain not in chains:  # removed by a rekey under an older key
            chains.append(self.keyring.current_chain)
        self._digests = ContactPointDigests(self.keyring, chains)  # UnknownSuppressionKey names the setting
        self._read_at = time.monotonic()
        return self._digests
