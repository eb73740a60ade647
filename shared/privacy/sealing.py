"""Sealing and opening the personal fields of an event's data (crypto-shredding, SPEC §9,
issue 15): the one place the publish path (`Outbox`) and the consume path (`parsing`) use.

A sealed field's value is replaced by one string, `rk1.<key id>.<base64url>` (crypto.seal),
that opens to the original JSON value under the subject's data key. The subject is named by
a field of the data left in plain (`person_id`, else `request_id`), or is the event's own id
when no such field is set. Once the subject's key is destroyed, `open_fields` raises
`KeyDestroyed`: every copy of the event, wherever it is kept, says nothing any more.

A field that is not sealed is taken as it is: events from other company systems may come
in plain (docs/PRIVACY.md, "Other systems").
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping, Sequence

from shared.privacy.crypto import UndecryptableValue, is_sealed, open_sealed, seal, sealed_key_id
from shared.privacy.keystore import KeyStore


def _worth_sealing(value: Any) -> bool:
    """Nothing to hide in an absent or empty value, and no key to make for it."""
    return value is not None and value != [] and value != {} and value != ""


def subject_of(data: Mapping[str, Any], subject_fields: Sequence[str], fallback: uuid.UUID) -> uuid.UUID:
    """Whose data key seals the event: the first subject field set, else `fallback` (its id)."""
    for name in subject_fields:
        value = data.get(name)
        if value:
            try:
                return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
            except ValueError:
                raise UndecryptableValue(f"{name} is not a UUID") from None
    return fallback


def needs_sealing(data: Mapping[str, Any], fields: Sequence[str]) -> bool:
    return any(_worth_sealing(data.get(name)) and not is_sealed(data.get(name)) for name in fields)


async def seal_fields(keys: KeyStore, data: dict[str, Any], fields: Sequence[str],
                      subject: uuid.UUID, conn: Any = None) -> dict[str, Any]:
    """`data` with each of `fields` that holds something sealed under the subject's newest key
    (made, if need be, in `conn`'s transaction: the publisher's). `KeyDestroyed` if the subject
    was erased (nothing new may be said about them)."""
    if not needs_sealing(data, fields):
        return data
    key = await keys.get_or_create_data_key(subject, conn)
    return {name: seal(key, value) if name in fields and _worth_sealing(value) and not is_sealed(value) else value
            for name, value in data.items()}


def has_sealed(data: Mapping[str, Any], fields: Sequence[str]) -> bool:
    return any(is_sealed(data.get(name)) for name in fields)


async def open_fields(keys: KeyStore, data: dict[str, Any], fields: Sequence[str],
                      subject: uuid.UUID) -> dict[str, Any]:
    """`data` with its sealed fields opened. `KeyDestroyed`: the subject is erased;
    `KeyNotFound`/`UndecryptableValue`: not sealed by this register for this subject."""
    opened = dict(data)
    for name in fields:
        value = data.get(name)
        if isinstance(value, str) and is_sealed(value):
            opened[name] = open_sealed(await keys.data_key(subject, sealed_key_id(value)), value)
    return opened
