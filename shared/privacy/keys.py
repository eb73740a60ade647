"""Reading the register's secret keys from settings: 32 random bytes written as base64 or hex.

A bad or missing key is a start-up error naming its variable, never a silent fallback: a key
derived from another secret is public when that secret is, and orphans what it protected when
that secret rotates.
"""
from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import Mapping

KEY_BYTES = 32


class KeyConfigurationError(ValueError):
    """A key setting is missing or malformed; the message names the variable, never the value."""


def parse_key(variable: str, value: str) -> bytes:
    """The 32 bytes `value` encodes (64 hex digits, or base64 / URL-safe base64)."""
    text = value.strip()
    if not text:
        raise KeyConfigurationError(f"{variable} is not set: give 32 random bytes as base64 or hex"
                                    f" (e.g. `openssl rand -base64 32`)")
    if len(text) == KEY_BYTES * 2:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigurationError(f"{variable} is neither base64 nor hex") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigurationError(f"{variable} must encode exactly {KEY_BYTES} bytes, not {len(raw)}")
    return raw


def parse_key_list(variable: str, value: str) -> list[bytes]:
    """Comma-separated keys (old keys kept during a rotation); empty is an empty list."""
    return [parse_key(f"{variable}[{i}]", part) for i, part in enumerate(value.split(",")) if part.strip()]


def generate_key() -> str:
    """A fresh key as base64, the form `parse_key` reads (development stacks, tests)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


DEVELOPMENT_KEYS = {"REKISTERI_SUPPRESSION_KEY": "suppression.key", "REKISTERI_MASTER_KEY": "master.key"}


def development_keys(directory: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Keys for an embedded development stack: those `env` lacks are read from (or first
    written to, readable by the owner only) `directory`, so a restarted stack reads its own
    data. Never used outside `rekisteri up`: there a missing key stops the service."""
    keys = {}
    for variable, filename in DEVELOPMENT_KEYS.items():
        if env.get(variable, "").strip():
            continue
        path = directory / filename
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(generate_key() + "\n")
        keys[variable] = path.read_text().strip()
    return keys
