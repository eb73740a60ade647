"""Consuming events exactly once in effect: parse → inbox → handler → commit → offset.

Each consumed event's (source, id) is recorded in the inbox in the same PostgreSQL
transaction as its effect, so a redelivery has no second effect. The Kafka offset is
committed only after that transaction commits. A message that cannot be parsed, or whose
handler keeps failing, is dead-lettered: stored with its reason and original bytes in
`dead_letters` and relayed to `<topic>-dlq` through the outbox, in one transaction; then the
consumer carries on. Database outages are not a reason to dead-letter: they are waited out.

One apply path serves every way an event arrives (a per-event topic's micro-batch, a bulk
topic's batch, an HTTP batch from another system): `InboxConsumer.apply` returns one
`EventResult` per message (applied, duplicate or rejected with its reason). Metrics and HTTP
answers are computed from those results; nothing reads a metric to decide.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable, Generic, Protocol, Sequence, TypeVar

import asyncpg
from shared.errors import Rejected
from shared.logging import correlation_id_var, get_logger
from shared.messaging.envelope import Envelope
from shared.messaging.events import Payload
from shared.messaging.outbox import Outbox, RecordingOutbox
from shared.messaging.parsing import Incoming, Parsed, describe_validation_error, error_reason, parse
from shared.messaging.retry import HANDLER_FAILURE, INFRASTRUCTURE_ERRORS, OUTAGE
from shared.messaging.topics import topic as topic_spec

log = get_logger(__name__)
P = TypeVar("P", bound=Payload)
# A dead letter's original bytes go to `<topic>-dlq` only up to this size (under the producer's
# 1 MB request limit): a bigger one would stall the outbox relay for good. The full original
# stays in the `dead_letters` table, with its digest in the header.
MAX_DEAD_LETTER_RELAY_BYTES = 512 * 1024
# Parsing a batch is CPU work with no await in it; it hands the event loop over every so many
# events, so the transaction of the batch before (waiting on PostgreSQL) is not held up by it.
YIELD_EVERY = 50

__all__ = ["INFRASTRUCTURE_ERRORS", "EventContext", "UnitOfWork", "InboxConsumer", "EventResult", "Status",
           "Incoming", "Parsed", "parse", "describe_validation_error"]


@dataclass
class UnitOfWork:
    """What a handler changes the world through, all in one transaction: the service's store
    (its storage functions bound to the transaction, or an in-memory fake in a unit test) and
    the outbox (`shared.messaging.outbox.Outbox`, or `RecordingOutbox` in a unit test)."""

    store: Any
    outbox: Outbox | RecordingOutbox


@dataclass
class EventContext(Generic[P]):
    """What a per-event handler gets: the event, and the unit of work to apply it through."""

    envelope: Envelope
    payload: P
    service: str
    topic: str
    uow: UnitOfWork

    @property
    def store(self) -> Any:
        return self.uow.store

    @property
    def outbox(self) -> Outbox | RecordingOutbox:
        return self.uow.outbox

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id or str(self.envelope.id)


class Status(str, Enum):
    applied = "applied"
    duplicate = "duplicate"  # its (source, id) was in the inbox already: no second effect
    rejected = "rejected"    # dead-lettered with `reason`


@dataclass(frozen=True)
class EventResult:
    status: Status
    reason: str | None = None


APPLIED = EventResult(Status.applied)
DUPLICATE = EventResult(Status.duplicate)


@dataclass
class BatchOutcome:
    """What an HTTP caller is told about its batch (SPEC §8)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, results: Sequence[EventResult]) -> "BatchOutcome":
        return cls(accepted=sum(r.status is Status.applied for r in results),
                   duplicates=sum(r.status is Status.duplicate for r in results),
                   rejected=[{"index": i, "reason": r.reason} for i, r in enumerate(results)
                             if r.status is Status.rejected])


@dataclass
class PreparedBatch:
    """A batch parsed, validated and prepared before its transaction (`prepare`).

    `results` holds, per message, its rejection (parse or validation) or None while pending;
    `valid` the parsed events still to apply; `work` the bulk handler's `prepare` of them."""

    incoming: Sequence[Incoming]
    valid: list[Parsed]
    positions: list[int]
    results: list[EventResult | None]
    work: Any = None


Handler = Callable[[EventContext[Any]], Awaitable[None]]
# A bulk topic's handler comes in two steps: `prepare` is pure work on the parsed events, done
# before the transaction (while the previous batch's runs); `apply` writes what it made through
# the unit of work. `apply` always gets `prepare` of exactly the events that were new to the inbox.
BatchPrepare = Callable[[list[Parsed]], Any]
BatchHandler = Callable[[UnitOfWork, Any], Awaitable[None]]
# Checks beyond the payload model (unknown meter, time in the future), a batch at a time: one
# reason per event, None for a valid one; a reason rejects its event.
BatchValidator = Callable[[list[Parsed]], Awaitable[list[str | None]]]
StoreFactory = Callable[[asyncpg.Connection], Any]


class ConsumerHost(Protocol):
    """What a consumer needs of the service that runs it (the runtime, or a test's stand-in)."""

    name: str
    settings: Any
    metrics: Any

    @property
    def pool(self) -> asyncpg.Pool: ...

    def store_for(self, conn: asyncpg.Connection) -> Any: ...


class InboxConsumer:
    """Applies one topic's events for one service: the Kafka subscriber and the HTTP batch
    accept call the same `apply`, so both paths share one dedupe key (SPEC §8)."""

    def __init__(self, host: ConsumerHost, topic_name: str, *, handler: Handler | None = None,
                 batch_handler: BatchHandler | None = None, prepare: BatchPrepare | None = None,
                 validate: BatchValidator | None = None) -> None:
        self.host = host
        self.validate = validate
        self.spec = topic_spec(topic_name)
        self.handler = handler
        self.batch_handler = batch_handler
        self.prepare_work: BatchPrepare = prepare or list
        self.consumer_name = f"{host.name}.{topic_name}"

    @property
    def pool(self) -> asyncpg.Pool:
        return self.host.pool

    async def apply(self, batch: Sequence[Incoming], *, wait_for_database: bool = True) -> list[EventResult]:
        """Apply a batch: one result per message, in order. Invalid messages are dead-lettered,
        duplicates skipped, the rest applied in one transaction (event by event if that fails).

        A consumer waits out a database outage; an HTTP caller (`wait_for_database=False`) gets
        the infrastructure error at once, to answer 503 and let the sender retry (SPEC §7)."""
        prepared = await self.prepare(batch, wait_for_database=wait_for_database)
        return await self.apply_prepared(prepared, wait_for_database=wait_for_database)

    async def handle_batch(self, batch: Sequence[Incoming], *, wait_for_database: bool = True) -> BatchOutcome:
        """`apply`, summed up for an HTTP caller."""
        return BatchOutcome.of(await self.apply(batch, wait_for_database=wait_for_database))

    # -- before the transaction ---------------------------------------------------
    async def prepare(self, batch: Sequence[Incoming], *, wait_for_database: bool = True) -> PreparedBatch:
        """Parse, validate and prepare (CPU only, but for dead letters): what `apply_prepared` applies."""

        results: list[EventResult | None] = [None] * len(batch)
        parsed: list[Parsed] = []
        positions: list[int] = []
        for index, incoming in enumerate(batch):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the previous batch's transaction send its next statement
            try:
                parsed.append(parse(self.spec, incoming))
                positions.append(index)
            except Rejected as exc:
                results[index] = await self._reject(incoming, exc.reason, None, wait_for_database)
        reasons = await self.validate(parsed) if self.validate and parsed else [None] * len(parsed)
        valid: list[Parsed] = []
        valid_positions: list[int] = []
        for event, index, reason in zip(parsed, positions, reasons, strict=True):
            if reason:
                results[index] = await self._reject(event.incoming, reason, event.envelope, wait_for_database)
            else:
                valid.append(event)
                valid_positions.append(index)
        return PreparedBatch(batch, valid, valid_positions, results, self._prepare_ahead(valid))

    def _prepare_ahead(self, valid: list[Parsed]) -> Any:
        """The bulk handler's `prepare`, ahead of the transaction. If it fails, it is left
        to run again in the transaction, where a failure isolates the poison event."""
        if not valid or self.batch_handler is None:
            return None
        try:
            return self.prepare_work(valid)
        except Exception:  # noqa: BLE001 - retried (and isolated) inside `_apply_batch`
            return None

    # -- the transaction -----------------------------------------------------------
    async def apply_prepared(self, prepared: PreparedBatch, *, wait_for_database: bool = True) -> list[EventResult]:
        results = prepared.results
        if prepared.valid:
            for index, result in zip(prepared.positions, await self._apply_valid(prepared, wait_for_database)):
                results[index] = result
        return [r if r is not None else DUPLICATE for r in results]

    async def _apply_valid(self, prepared: PreparedBatch, wait_for_database: bool) -> list[EventResult]:
        """The whole batch in one transaction; if it fails twice, each event on its own."""
        valid, attempt = prepared.valid, 0
        while True:
            attempt += 1
            try:
                return await self._apply_batch(valid, prepared.work)
            except INFRASTRUCTURE_ERRORS as exc:
                if not wait_for_database:
                    raise
                log.warning("consumer_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await OUTAGE.sleep(attempt)
            except Exception as exc:  # noqa: BLE001 - isolate the poison message one by one
                if attempt < 2:
                    continue
                log.warning("batch_failed_isolating", topic=self.spec.name, size=len(valid), error=type(exc).__name__)
                return [await self._apply_alone(p, wait_for_database) for p in valid]

    async def _apply_alone(self, parsed: Parsed, wait_for_database: bool) -> EventResult:
        """One event of a failed batch on its own: retried, then dead-lettered with the reason."""
        max_attempts = self.host.settings.consumer_max_attempts
        failures = outages = 0
        while True:
            try:
                [result] = await self._apply_batch([parsed])
                return result
            except Rejected as exc:
                return await self._reject(parsed.incoming, exc.reason, parsed.envelope, wait_for_database)
            except INFRASTRUCTURE_ERRORS as exc:
                if not wait_for_database:
                    raise
                outages += 1
                log.warning("consumer_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await OUTAGE.sleep(outages)  # outages never exhaust the retries
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                failures += 1
                if failures >= max_attempts:
                    log.error("event_failed", topic=self.spec.name, event_id=str(parsed.envelope.id),
                              attempts=failures, error=type(exc).__name__)
                    reason = f"failed after {failures} attempts: {error_reason(exc)}"
                    return await self._reject(parsed.incoming, reason, parsed.envelope, wait_for_database)
                await HANDLER_FAILURE.sleep(failures)

    async def _apply_batch(self, valid: list[Parsed], work: Any = None) -> list[EventResult]:
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
                fresh = [True] * len(valid)
            else:
                new_keys = {(r["source"], r["event_id"]) for r in rows}
                fresh = []
                for p in valid:  # keep the first of duplicates within the batch, in order
                    fresh.append(p.inbox_key in new_keys)
                    new_keys.discard(p.inbox_key)
            new = [p for p, f in zip(valid, fresh) if f]
            store = self.host.store_for(conn)
            if new and self.batch_handler is not None:
                uow = UnitOfWork(store, Outbox(conn, self.host.name))
                await self.batch_handler(uow, work if len(new) == len(valid) and work is not None else self.prepare_work(new))
            elif self.handler is not None:
                for p in new:  # per-event handlers, one transaction for the whole batch
                    token = correlation_id_var.set(p.envelope.correlation_id or str(p.envelope.id))
                    try:
                        uow = UnitOfWork(store, Outbox(conn, self.host.name, p.envelope.correlation_id or str(p.envelope.id)))
                        await self.handler(EventContext(p.envelope, p.payload, self.host.name, self.spec.name, uow))
                    finally:
                        correlation_id_var.reset(token)
        results = [APPLIED if f else DUPLICATE for f in fresh]
        self._observe(results, time.perf_counter() - started)
        return results

    def _observe(self, results: Sequence[EventResult], seconds: float) -> None:
        """Metrics follow the results (they never decide anything)."""
        metrics, topic = self.host.metrics, self.spec.name
        applied = sum(r.status is Status.applied for r in results)
        metrics.events_consumed.labels(topic=topic).inc(applied)
        metrics.events_duplicate.labels(topic=topic).inc(len(results) - applied)
        metrics.handler_seconds.labels(topic=topic).observe(seconds)

    # -- dead letters ---------------------------------------------------------------
    async def _reject(self, incoming: Incoming, reason: str, envelope: Envelope | None,
                      wait_for_database: bool) -> EventResult:
        await self.dead_letter(incoming, reason, envelope, wait_for_database=wait_for_database)
        return EventResult(Status.rejected, reason)

    async def dead_letter(self, incoming: Incoming, reason: str, envelope: Envelope | None = None, *,
                          wait_for_database: bool = True) -> None:
        """Keep the message and its reason, and relay it to the dead-letter topic."""
        digest = hashlib.sha256(incoming.value).hexdigest()  # of the raw bytes: the dedupe key of a dead letter
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
        attempt = 0
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
                        await Outbox(conn, self.host.name).add_raw(
                            self.spec.dead_letter, (incoming.key or b"").decode(errors="replace"), relayed, headers)
                break
            except INFRASTRUCTURE_ERRORS as exc:
                if not wait_for_database:
                    raise
                attempt += 1
                log.warning("dead_letter_waiting_for_database", topic=self.spec.name, error=type(exc).__name__)
                await OUTAGE.sleep(attempt)
        if inserted is not None:
            self.host.metrics.events_dead_lettered.labels(topic=self.spec.name).inc()
            log.warning("event_dead_lettered", topic=self.spec.name, consumer=self.consumer_name,
                        event_id=str(envelope.id) if envelope else None, partition=incoming.partition,
                        offset=incoming.offset, reason=reason)
