"""Reading one message off the wire: size limit, the envelope and its typed payload in one
validation pass, type and schema version, the publisher's signature on commands. Errors are
`Rejected` with a reason fit for a dead-letter header: field paths and rules, never values."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Sequence, cast

from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import SchemaValidator
from typing_extensions import NotRequired, TypedDict

from shared.errors import Rejected
from shared.logging import scrub_text
from shared.messaging.envelope import Envelope
from shared.messaging.events import Payload
from shared.messaging.signing import SIGNED_TOPICS, keyring
from shared.messaging.topics import Topic
from shared.privacy.crypto import KeyNotFound, UndecryptableValue
from shared.privacy.keystore import KeyStore
from shared.privacy.sealing import has_sealed, open_fields, subject_of


@dataclass
class Incoming:
    """One raw message as it came off the broker (or an HTTP batch)."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None
    headers: Sequence[tuple[str, bytes]] | None = None  # Kafka's; `traceparent` continues a trace


class Parsed:
    """One parsed event: its envelope and its typed payload.

    An event of a `FIELDS_ONLY_TOPICS` topic is validated to the envelope's fields
    (`_envelope_fields`) rather than to an envelope model; the model is made only if something
    asks for it (a dead letter, a log line): its consumer needs the payload and dedupe key."""

    __slots__ = ("incoming", "payload", "_envelope", "_fields", "_model")

    def __init__(self, incoming: Incoming, envelope: Envelope | None = None, payload: Payload | None = None, *,
                 fields: dict[str, Any] | None = None, model: type[Envelope] = Envelope) -> None:
        if envelope is None and fields is None:
            raise TypeError("Parsed needs its envelope or the envelope's validated fields")
        self.incoming = incoming
        self.payload = cast(Payload, payload if payload is not None else envelope.data if envelope else None)
        self._envelope, self._fields, self._model = envelope, fields, model

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:  # the fields were validated: built, not validated again
            self._envelope = self._model.model_construct(**cast(dict[str, Any], self._fields))
        return self._envelope

    @property
    def inbox_key(self) -> tuple[str, uuid.UUID]:
        """(source, id): the dedupe key."""
        fields = self._fields
        if fields is not None:
            return fields["source"], fields["id"]
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
    if spec.name in FIELDS_ONLY_TOPICS:
        return _parse_fields(spec, incoming)
    try:  # the common case in one validation pass: envelope and payload together
        envelope = _typed_envelope(spec.payload).model_validate_json(incoming.value)
    except ValidationError as exc:
        _raise_precise_rejection(spec, incoming.value)
        raise Rejected(f"invalid event: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, envelope.type, envelope.schema_version)
    if spec.name in SIGNED_TOPICS:
        keyring().verify(envelope, incoming.value)
    return Parsed(incoming, envelope, cast(Payload, envelope.data))  # the typed envelope's data is the payload model


# Every sealed field starts so (shared/privacy/crypto.py): a message without it has none.
_SEALED_MARK = b'"rk1.'


async def parse_opening(spec: Topic, incoming: Incoming, keys: KeyStore | None) -> Parsed:
    """`parse`, with the topic's sealed fields opened under the subject's data key (issue 15):
    the one place consumers decrypt. Raises `KeyDestroyed` when the subject was erased (the
    caller skips the event), `KeyStoreUnavailable` when the store is away (the caller waits),
    `Rejected` for a value this register did not seal for this subject. A message with its
    fields in plain (another company system's) is parsed as it is."""
    if not spec.sealed_fields or _SEALED_MARK not in incoming.value:
        return parse(spec, incoming)
    if len(incoming.value) > MAX_EVENT_BYTES:
        raise Rejected(f"message too large: {len(incoming.value)} bytes (the limit is {MAX_EVENT_BYTES})")
    try:
        envelope = Envelope.from_bytes(incoming.value)
    except ValidationError as exc:
        raise Rejected(f"invalid envelope: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, envelope.type, envelope.schema_version)
    if spec.name in SIGNED_TOPICS:  # the signature covers the sealed form, as it travelled
        keyring().verify(envelope, incoming.value)
    data = envelope.data
    if has_sealed(data, spec.sealed_fields):
        if keys is None:
            raise Rejected(f"sealed fields on {spec.name} and no key store to open them")
        try:
            data = await open_fields(keys, data, spec.sealed_fields, subject_of(data, spec.seal_subject, envelope.id))
        except (KeyNotFound, UndecryptableValue) as exc:
            raise Rejected(f"sealed field does not open: {exc}") from None
    try:
        payload = spec.payload.model_validate(data)
    except ValidationError as exc:
        raise Rejected(f"invalid data: {describe_validation_error(exc)}") from None
    typed = _typed_envelope(spec.payload).model_construct(**{**dict(envelope), "data": payload})
    return Parsed(incoming, typed, payload)


# Bulk topics whose consumers read each event's payload and dedupe key only (billing's usage
# fold): validated to the envelope's fields, the envelope model made only for a dead letter.
# A consumer that reads every envelope (retention's bulk topics read correlation ids) would pay
# more for building them afterwards (~6 µs) than validating to the model costs. Not for
# signed topics: the signature is verified on the model.
FIELDS_ONLY_TOPICS = frozenset({"usage-recorded"})


def _parse_fields(spec: Topic, incoming: Incoming) -> Parsed:
    """`parse` of a fields-only topic's event: the same rules and reasons, validated to the
    envelope's fields. Building the envelope model cost ~1.6 µs of ~8 µs per event (issue 21)."""
    try:
        fields = _envelope_fields(spec.payload).validate_json(incoming.value)
    except ValidationError as exc:
        _raise_precise_rejection(spec, incoming.value)
        raise Rejected(f"invalid event: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, fields["type"], fields.get("schema_version", _DEFAULT_SCHEMA_VERSION))
    return Parsed(incoming, payload=fields["data"], fields=fields, model=_typed_envelope(spec.payload))


_DEFAULT_SCHEMA_VERSION = Envelope.model_fields["schema_version"].default


@cache
def _envelope_fields(payload: type[Payload]) -> SchemaValidator:
    """The typed envelope as a TypedDict, derived from `Envelope` (its fields, constraints,
    optional fields and field validators), so it validates exactly as the model does."""
    decorators = Envelope.__pydantic_decorators__
    if decorators.model_validators or any(d.info.mode != "after" for d in decorators.field_validators.values()):
        raise TypeError("Envelope gained validators the derived fields do not carry over")
    after = {name: [AfterValidator(d.func) for d in decorators.field_validators.values() if name in d.info.fields]
             for name in Envelope.model_fields}
    fields: dict[str, Any] = {}
    for name, info in Envelope.model_fields.items():
        metadata = [*info.metadata, *after[name]]
        annotation = payload if name == "data" else info.annotation
        typed = Annotated[(annotation, *metadata)] if metadata else annotation
        fields[name] = typed if info.is_required() else NotRequired[typed]
    shape = TypedDict(f"{payload.__name__}EnvelopeFields", fields)  # type: ignore[misc]  # built from the fields
    shape.__pydantic_config__ = ConfigDict(extra=Envelope.model_config.get("extra"))  # type: ignore[attr-defined]
    return TypeAdapter(shape).validator  # type: ignore[return-value]


@cache
def _typed_envelope(payload: type[Payload]) -> type[Envelope]:
    """The envelope with `data` typed as `payload`, so one JSON parse validates both."""
    return create_model(f"{payload.__name__}Envelope", __base__=Envelope, data=(payload, ...))


def _check_type_and_version(spec: Topic, type_: str, schema_version: int) -> None:
    if type_ != spec.name:
        raise Rejected(f"invalid envelope: type {type_[:100]!r} does not belong on topic {spec.name}")
    if schema_version != spec.schema_version:
        raise Rejected(f"unsupported schema_version {schema_version} (topic {spec.name} has {spec.schema_version})")


def _raise_precise_rejection(spec: Topic, raw: bytes) -> None:
    """Say whether the envelope or its data is wrong, naming the fields."""
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as exc:
        raise Rejected(f"invalid envelope: {describe_validation_error(exc)}") from None
    _check_type_and_version(spec, envelope.type, envelope.schema_version)
    try:
        spec.payload.model_validate(envelope.data)
    except ValidationError as exc:
        raise Rejected(f"invalid data: {describe_validation_error(exc)}") from None


def error_reason(exc: BaseException) -> str:
    return scrub_text(f"{type(exc).__name__}: {exc}")[:500]
