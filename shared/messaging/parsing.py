"""Reading one message off the wire: size limit, the envelope and its typed payload in one
validation pass, type and schema version, the publisher's signature on commands. Errors are
`Rejected` with a reason fit for a dead-letter header: field paths and rules, never values."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError, create_model

from shared.errors import Rejected
from shared.logging import scrub_text
from shared.messaging.envelope import Envelope
from shared.messaging.events import Payload
from shared.messaging.signing import SIGNED_TOPICS, keyring
from shared.messaging.topics import Topic


@dataclass
class Incoming:
    """One raw message as it came off the broker (or an HTTP batch)."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass
class Parsed:
    incoming: Incoming
    envelope: Envelope
    payload: Payload

    @property
    def inbox_key(self) -> tuple[str, uuid.UUID]:
        """(source, id): the dedupe key."""
        return self.envelope.source, self.envelope.id


def describe_validation_error(exc: ValidationError) -> str:
    """Field paths and rules, never the offending values (they may be personal)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# Largest event accepted (Kafka's default message size). Events carry ids and a few contact
# points; anything bigger is a broken producer, dead-lettered rather than applied.
MAX_EVENT_BYTES = 1024 * 1024


def parse(spec: Topic, incoming: Incoming) -> Parsed:
    """Envelope and payload, or `Rejected` with a reason fit for a dead-letter header."""
    if not incoming.value:
        raise Rejected("invalid envelope: empty message")
    if len(incoming.value) > MAX_EVENT_BYTES:
        raise Rejected(f"message too large: {len(incoming.value)} bytes (the limit is {MAX_EVENT_BYTES})")
    try:  # the common case in one validation pass: envelope and payload together
        envelope = _typed_envelope(spec.payload).model_validate_json(incoming.value)
    except ValidationError as exc:
        _raise_precise_rejection(spec, incoming.value)
        raise Rejected(f"invalid event: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, envelope)
    if spec.name in SIGNED_TOPICS:
        keyring().verify(envelope, incoming.value)
    return Parsed(incoming, envelope, envelope.data)


@lru_cache(maxsize=None)
def _typed_envelope(payload: type[Payload]) -> type[Envelope]:
    """The envelope with `data` typed as `payload`, so one JSON parse validates both."""
    return create_model(f"{payload.__name__}Envelope", __base__=Envelope, data=(payload, ...))


def _check_type_and_version(spec: Topic, envelope: Envelope) -> None:
    if envelope.type != spec.name:
        raise Rejected(f"invalid envelope: type {envelope.type[:100]!r} does not belong on topic {spec.name}")
    if envelope.schema_version != spec.schema_version:
        raise Rejected(f"unsupported schema_version {envelope.schema_version} (topic {spec.name} has {spec.schema_version})")


def _raise_precise_rejection(spec: Topic, raw: bytes) -> None:
    """Say whether the envelope or its data is wrong, naming the fields."""
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as exc:
        raise Rejected(f"invalid envelope: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, envelope)
    try:
        spec.payload.model_validate(envelope.data)
    except ValidationError as exc:
        raise Rejected(f"invalid data: {describe_validation_error(exc)}") from None


def error_reason(exc: BaseException) -> str:
    return scrub_text(f"{type(exc).__name__}: {exc}")[:500]
