"""Consuming events exactly once in effect: parse → inbox → handler → commit → offset.

Each consumed event's (source, id) is recorded in the inbox in the same PostgreSQL
transaction as its effect, so a redelivery has no second effect. The Kafka offset is
committed only after that transaction commits (FastStream ack after processing). A
message that cannot be parsed, or whose handler keeps failing, is dead-lettered: stored
with its reason and original bytes in `dead_letters` and relayed to `<topic>-dlq` through
the outbox, in one transaction; then the consumer carries on. Database outages are not a
reason to dead-letter: they are retried until the database answers.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Awaitable, Callable, Generic, Protocol, Sequence, TypeVar

import asyncpg
from pydantic import ValidationError, create_model

from shared.messaging.envelope import Envelope
from shared.errors import Rejected
from shared.messaging.events import Payload
from shared.logging import correlation_id_var, get_logger, scrub_text
from shared.messaging.outbox import add_event, add_raw
from shared.messaging.topics import Topic, topic as topic_spec

log = get_logger(__name__)
P = TypeVar("P", bound=Payload)

INFRASTRUCTURE_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


@dataclass
class EventContext(Generic[P]):
    """What a handler gets: the open transaction, the event, and a way to emit events."""

    conn: asyncpg.Connection
    envelope: Envelope
    payload: P
    service: str
    topic: str

    async def publish(self, payload: Payload, *, event_id: uuid.UUID | None = None) -> Envelope:
        """Emit an event through the outbox, in this transaction, with this correlation id."""
        return await add_event(
            self.conn, payload, source=self.service,
            correlation_id=self.envelope.correlation_id or str(self.envelope.id), event_id=event_id,
        )


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


@dataclass
class BatchOutcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PreparedBatch:
    """A batch parsed, validated and prepared before its transaction (`prepare_batch`)."""

    incoming: Sequence[Incoming]
    valid: list[Parsed]
    outcome: BatchOutcome
    work: Any = None  # the bulk handler's `prepare` of `valid`


Handler = Callable[[EventContext[Any]], Awaitable[None]]
# A bulk topic's handler comes in two steps: `prepare` is pure work on the parsed events, done
# before the transaction (while the previous batch's runs); `apply` writes what it made, in the
# transaction. `apply` always gets `prepare` of exactly the events that were new to the inbox.
BatchPrepare = Callable[[list[Parsed]], Any]
BatchHandler = Callable[[asyncpg.Connection, Any], Awaitable[None]]
# Checks beyond the payload model (unknown meter, time in the future), a batch at a time: one
# reason per event, None for a valid one; a reason rejects its event.
BatchValidator = Callable[[list[Parsed]], Awaitable[list[str | None]]]


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
# A dead letter's original bytes go to `<topic>-dlq` only up to this size (under the producer's
# 1 MB request limit): a bigger one would stall the outbox relay for good. The full original
# stays in the `dead_letters` table, with its digest in the header.
MAX_DEAD_LETTER_RELAY_BYTES = 512 * 1024
# Parsing a batch is CPU work with no await in it; it hands the event loop over every so many
# events, so the transaction of the batch before (waiting on PostgreSQL) is not held up by it.
YIELD_EVERY = 50


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


class ConsumerHost(Protocol):
    """What a consumer needs of the service that runs it (the runtime, or a test's stand-in)."""

    name: str
    settings: Any
    metrics: Any

    @property
    def pool(self) -> asyncpg.Pool: ...


class InboxConsumer:
    """Applies one topic's events for one service. Used by the Kafka subscriber and by
    HTTP batch accepts alike, so both paths share one dedupe key (SPEC §8)."""

    def __init__(self, runtime: ConsumerHost, topic_name: str, *, handler: Handler | None = None,
                 batch_handler: BatchHandler | None = None, prepare: BatchPrepare | None = None,
                 validate: BatchValidator | None = None) -> None:
        self.runtime = runtime
        self.validate = validate
        self.spec = topic_spec(topic_name)
        self.handler = handler
        self.batch_handler = batch_handler
        self.prepare: BatchPrepare = prepare or list
        self.consumer_name = f"{runtime.name}.{topic_name}"

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    # -- one message --------------------------------------------------------------
    async def handle(self, incoming: Incoming) -> None:
        """Apply one message; returns once its effect (or its dead letter) is committed."""
        try:
            parsed = parse(self.spec, incoming)
        except Rejected as exc:
            await self.dead_letter(incoming, exc.reason)
            return
        token = correlation_id_var.set(parsed.envelope.correlation_id or str(parsed.envelope.id))
        try:
            await self._apply_with_retries(parsed)
        finally:
            correlation_id_var.reset(token)

    async def _apply_with_retries(self, parsed: Parsed) -> str | None:
        """Apply one event; None if applied or a duplicate, else the dead-letter reason."""
        max_attempts = self.runtime.settings.consumer_max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._apply_one(parsed)
                return None
            except Rejected as exc:
                await self.dead_letter(parsed.incoming, exc.reason, parsed.envelope)
                return exc.reason
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("consumer_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
                attempt = min(attempt, 1)  # outages never exhaust the retries
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                if attempt >= max_attempts:
                    log.error("event_failed", topic=self.spec.name, event_id=str(parsed.envelope.id),
                              attempts=attempt, error=type(exc).__name__)
                    reason = f"failed after {attempt} attempts: {error_reason(exc)}"
                    await self.dead_letter(parsed.incoming, reason, parsed.envelope)
                    return reason
                await asyncio.sleep(0.05 * 2 ** attempt)

    async def _apply_one(self, parsed: Parsed) -> bool:
        assert self.handler is not None
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            if not await self._record_in_inbox(conn, parsed.envelope):
                self.runtime.metrics.events_duplicate.labels(topic=self.spec.name).inc()
                return False
            await self.handler(EventContext(conn, parsed.envelope, parsed.payload, self.runtime.name, self.spec.name))
        self.runtime.metrics.events_consumed.labels(topic=self.spec.name).inc()
        self.runtime.metrics.handler_seconds.labels(topic=self.spec.name).observe(time.perf_counter() - started)
        return True

    async def _record_in_inbox(self, conn: asyncpg.Connection, envelope: Envelope) -> bool:
        status = await conn.execute(
            "INSERT INTO inbox (source, event_id, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            envelope.source, envelope.id, self.spec.name,
        )
        return status.endswith(" 1")

    # -- batches (bulk topics, HTTP accepts) --------------------------------------
    async def handle_batch(self, batch: Sequence[Incoming], *, wait_for_database: bool = True) -> BatchOutcome:
        """Apply a batch in one transaction: invalid messages are dead-lettered (and reported),
        duplicates skipped, the rest handed to the batch handler. Nothing is half-written.

        A consumer waits out a database outage; an HTTP caller (`wait_for_database=False`) gets
        the infrastructure error at once, to answer 503 and let the sender retry (SPEC §7)."""
        prepared = await self.prepare_batch(batch, wait_for_database=wait_for_database)
        return await self.apply_prepared(prepared, wait_for_database=wait_for_database)

    async def prepare_batch(self, batch: Sequence[Incoming], *, wait_for_database: bool = True) -> PreparedBatch:
        """Parse, validate and prepare (CPU only, but for dead letters): what `apply_prepared` applies."""
        outcome = BatchOutcome()
        parsed: list[Parsed] = []
        positions: list[int] = []  # each parsed event's index in the batch
        for index, incoming in enumerate(batch):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the previous batch's transaction send its next statement
            try:
                parsed.append(parse(self.spec, incoming))
                positions.append(index)
            except Rejected as exc:
                await self._reject(outcome, index, incoming, exc.reason, None, wait_for_database)
        reasons = await self.validate(parsed) if self.validate and parsed else [None] * len(parsed)
        valid: list[Parsed] = []
        for event, index, reason in zip(parsed, positions, reasons, strict=True):
            if reason:
                await self._reject(outcome, index, event.incoming, reason, event.envelope, wait_for_database)
            else:
                valid.append(event)
        outcome.rejected.sort(key=lambda rejection: rejection["index"])
        return PreparedBatch(batch, valid, outcome, self._prepare_ahead(valid))

    async def _reject(self, outcome: BatchOutcome, index: int, incoming: Incoming, reason: str,
                      envelope: Envelope | None, wait_for_database: bool) -> None:
        outcome.rejected.append({"index": index, "reason": reason})
        await self.dead_letter(incoming, reason, envelope, wait_for_database=wait_for_database)

    def _prepare_ahead(self, valid: list[Parsed]) -> Any:
        """The bulk handler's `prepare`, ahead of the transaction. If it fails, it is left
        to run again in the transaction, where a failure isolates the poison event."""
        if not valid or self.batch_handler is None:
            return None
        try:
            return self.prepare(valid)
        except Exception:  # noqa: BLE001 - retried (and isolated) inside `_apply_batch`
            return None

    async def apply_prepared(self, prepared: PreparedBatch, *, wait_for_database: bool = True) -> BatchOutcome:
        batch, valid, outcome = prepared.incoming, prepared.valid, prepared.outcome
        if not valid:
            return outcome
        attempt = 0
        while True:
            attempt += 1
            try:
                fresh = await self._apply_batch(valid, prepared.work)
                outcome.accepted += len(fresh)
                outcome.duplicates += len(valid) - len(fresh)
                return outcome
            except INFRASTRUCTURE_ERRORS as exc:
                if not wait_for_database:
                    raise
                log.warning("consumer_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
                attempt = 1
            except Exception as exc:  # noqa: BLE001 - isolate the poison message one by one
                if attempt < 2:
                    continue
                log.warning("batch_failed_isolating", topic=self.spec.name, size=len(valid), error=type(exc).__name__)
                for parsed in valid:
                    sub = await (self._apply_isolated_event(parsed) if self.handler else self._apply_isolated(parsed))
                    outcome.accepted += sub.accepted
                    outcome.duplicates += sub.duplicates
                    if sub.rejected:
                        outcome.rejected.append({"index": batch.index(parsed.incoming), **sub.rejected[0]})
                return outcome

    async def _apply_isolated_event(self, parsed: Parsed) -> BatchOutcome:
        """One event of a failed batch on its own, with the per-event retries."""
        outcome = BatchOutcome()
        duplicates_before = self.runtime.metrics.events_duplicate.labels(topic=self.spec.name)._value.get()
        token = correlation_id_var.set(parsed.envelope.correlation_id or str(parsed.envelope.id))
        try:
            reason = await self._apply_with_retries(parsed)
        finally:
            correlation_id_var.reset(token)
        if reason is not None:
            outcome.rejected.append({"reason": reason})
        elif self.runtime.metrics.events_duplicate.labels(topic=self.spec.name)._value.get() > duplicates_before:
            outcome.duplicates = 1
        else:
            outcome.accepted = 1
        return outcome

    async def _apply_isolated(self, parsed: Parsed) -> BatchOutcome:
        outcome = BatchOutcome()
        try:
            fresh = await self._apply_batch([parsed])
            outcome.accepted, outcome.duplicates = len(fresh), 1 - len(fresh)
        except Rejected as exc:
            outcome.rejected.append({"reason": exc.reason})
            await self.dead_letter(parsed.incoming, exc.reason, parsed.envelope)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001
            reason = f"failed: {error_reason(exc)}"
            outcome.rejected.append({"reason": reason})
            await self.dead_letter(parsed.incoming, reason, parsed.envelope)
        return outcome

    async def _apply_batch(self, valid: list[Parsed], work: Any = None) -> list[Parsed]:
        """Record the batch in the inbox and apply what is new, all in one transaction.
        `work` is the bulk handler's `prepare` of `valid`, made again if some were not new."""
        started = time.perf_counter()
        sources, event_ids = [p.inbox_key[0] for p in valid], [p.inbox_key[1] for p in valid]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO inbox (source, event_id, topic)"
                " SELECT s, e, $3 FROM unnest($1::text[], $2::uuid[]) AS t(s, e)"
                " ON CONFLICT DO NOTHING RETURNING source, event_id",
                sources, event_ids, self.spec.name,
            )
            if len(rows) == len(valid):  # all new (and no key twice in the batch)
                fresh = valid
            else:
                new_keys = {(r["source"], r["event_id"]) for r in rows}
                fresh = []
                for p in valid:  # keep the first of duplicates within the batch, in order
                    if p.inbox_key in new_keys:
                        new_keys.discard(p.inbox_key)
                        fresh.append(p)
            if fresh and self.batch_handler is not None:
                await self.batch_handler(conn, work if fresh is valid and work is not None else self.prepare(fresh))
            elif self.handler is not None:
                for p in fresh:  # per-event handlers, one transaction for the whole batch
                    token = correlation_id_var.set(p.envelope.correlation_id or str(p.envelope.id))
                    try:
                        await self.handler(EventContext(conn, p.envelope, p.payload, self.runtime.name, self.spec.name))
                    finally:
                        correlation_id_var.reset(token)
        self.runtime.metrics.events_consumed.labels(topic=self.spec.name).inc(len(fresh))
        self.runtime.metrics.events_duplicate.labels(topic=self.spec.name).inc(len(valid) - len(fresh))
        self.runtime.metrics.handler_seconds.labels(topic=self.spec.name).observe(time.perf_counter() - started)
        return fresh

    # -- dead letters ---------------------------------------------------------------
    async def dead_letter(self, incoming: Incoming, reason: str, envelope: Envelope | None = None, *,
                          wait_for_database: bool = True) -> None:
        """Keep the message and its reason, and relay it to the dead-letter topic."""
        digest = hashlib.sha256(incoming.value).hexdigest()
        headers = {
            "x-dead-letter-reason": reason[:1000],
            "x-original-topic": self.spec.name,
            "x-consumer": self.consumer_name,
            "x-original-partition": str(incoming.partition if incoming.partition is not None else ""),
            "x-original-offset": str(incoming.offset if incoming.offset is not None else ""),
        }
        relayed = incoming.value
        if len(relayed) > MAX_DEAD_LETTER_RELAY_BYTES:
            relayed = relayed[:MAX_DEAD_LETTER_RELAY_BYTES]
            headers |= {"x-original-truncated": "true", "x-original-bytes": str(len(incoming.value)),
                        "x-original-sha256": digest}
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    inserted = await conn.fetchval(
                        "INSERT INTO dead_letters (topic, partition, \"offset\", consumer, reason, original, digest, key, event_id)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                        " ON CONFLICT (consumer, digest) DO UPDATE SET replayed_at = NULL, reason = EXCLUDED.reason"
                        " WHERE dead_letters.replayed_at IS NOT NULL"
                        " RETURNING id",
                        self.spec.name, incoming.partition, incoming.offset, self.consumer_name, reason,
                        incoming.value, digest, incoming.key, str(envelope.id) if envelope else None,
                    )
                    if inserted is not None:
                        await add_raw(conn, self.spec.dead_letter, (incoming.key or b"").decode(errors="replace"),
                                      relayed, headers)
                break
            except INFRASTRUCTURE_ERRORS as exc:
                if not wait_for_database:
                    raise
                log.warning("dead_letter_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await asyncio.sleep(1.0)
        if inserted is not None:
            self.runtime.metrics.events_dead_lettered.labels(topic=self.spec.name).inc()
            log.warning("event_dead_lettered", topic=self.spec.name, consumer=self.consumer_name,
                        event_id=str(envelope.id) if envelope else None, partition=incoming.partition,
                        offset=incoming.offset, reason=reason)
