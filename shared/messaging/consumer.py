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
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar

import asyncpg
from pydantic_core import to_json
from shared.errors import Rejected
from shared.logging import correlation_id_var, get_logger, scrub_text
from shared.messaging.dead_letters import SUBJECT_HEADER, sealed_relay
from shared.messaging.envelope import Envelope
from shared.messaging.handling import (APPLIED, DUPLICATE, ERASED, BatchHandler, BatchOutcome, BatchPrepare,
                                      BatchValidator, EventContext, EventResult, Handler, Status, UnitOfWork)
from shared.messaging.outbox import Outbox
from shared.messaging.parsing import Incoming, Parsed, error_reason, parse, parse_opening
from shared.privacy.crypto import KeyDestroyed
from shared.privacy.naming import NamingDigests
from shared.messaging.retry import HANDLER_FAILURE, INFRASTRUCTURE_ERRORS, through_outages
from shared.messaging.topics import topic as topic_spec
from shared import tracing

log = get_logger(__name__)
T = TypeVar("T")
# A dead letter's original bytes go to `<topic>-dlq` only up to this size: sealed (base64 in
# a sealed base64 value, about 16/9 of it) it stays under the relay's 900 KB limit, below the
# producer's 1 MB request limit; a bigger one would be set aside. The full original stays in
# the `dead_letters` table.
MAX_DEAD_LETTER_RELAY_BYTES = 384 * 1024
# Parsing a batch is CPU work with no await in it; it hands the event loop over every so many
# events, so the transaction of the batch before (waiting on PostgreSQL) is not held up by it.
YIELD_EVERY = 50

__all__ = ["InboxConsumer", "PreparedBatch", "ConsumerHost"]


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


StoreFactory = Callable[[asyncpg.Connection], Any]


class ConsumerHost(Protocol):
    """What a consumer needs of the service that runs it (the runtime, or a test's stand-in)."""

    name: str
    settings: Any
    metrics: Any

    @property
    def pool(self) -> asyncpg.Pool: ...

    def store_for(self, conn: asyncpg.Connection) -> Any: ...


# The batch's (source, id) keys go as one JSON text parameter: binding a text[] and a uuid[]
# costs the client ~1 µs per event in asyncpg's per-element checks and encoding, the JSON
# ~0.3 µs (issue 21, measured). Only the count comes back unless some key was there already.
_INBOX_INSERT = (
    "WITH new AS (INSERT INTO inbox (source, event_id, topic)"
    " SELECT k->>0, (k->>1)::uuid, $2 FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS t(k, n)"
    " ORDER BY n ON CONFLICT DO NOTHING RETURNING source, event_id)"
    " SELECT count(*) AS inserted, CASE WHEN count(*) < $3 THEN"
    " json_agg(json_build_array(source, event_id))::text END AS keys FROM new")


async def _record_in_inbox(conn: asyncpg.Connection, valid: Sequence[Parsed], topic: str) -> list[bool]:
    """Insert the batch's keys into the inbox; per event, whether it is new (of duplicates
    within the batch, the first is)."""
    keys = [p.inbox_key for p in valid]
    row = await conn.fetchrow(_INBOX_INSERT, to_json(keys).decode(), topic, len(keys))
    if row["inserted"] == len(keys):  # all new (and no key twice in the batch)
        return [True] * len(keys)
    new_keys = {(source, uuid.UUID(event_id)) for source, event_id in json.loads(row["keys"] or "[]")}
    fresh = []
    for key in keys:  # keep the first of duplicates within the batch, in order
        fresh.append(key in new_keys)
        new_keys.discard(key)
    return fresh


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
        self.group = self.spec.consumer_group(host.name)
        self._naming_digests: NamingDigests | None = None

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
        plain = not self.spec.sealed_fields  # nothing to open: parsed without a coroutine per event
        for index, incoming in enumerate(batch):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the previous batch's transaction send its next statement
            try:
                parsed.append(parse(self.spec, incoming) if plain else await self._parse(incoming, wait_for_database))
                positions.append(index)
            except Rejected as exc:
                results[index] = await self._reject(incoming, exc.reason, None, wait_for_database)
            except KeyDestroyed:  # the person is erased: every copy of the event is a tombstone
                results[index] = ERASED
                self.host.metrics.erased_event_skipped.labels(topic=self.spec.name).inc()
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

    async def _parse(self, incoming: Incoming, wait_for_database: bool) -> Parsed:
        """Parse, opening sealed fields (`parse_opening`); a key store that is away is waited
        out like the database (an HTTP caller gets the error, to answer 503)."""
        if not self.spec.sealed_fields:
            return parse(self.spec, incoming)
        return await through_outages(lambda: parse_opening(self.spec, incoming, getattr(self.host, "keys", None)),
                                     wait=wait_for_database, waiting="consumer_waiting_for_key_store", topic=self.spec.name)

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
        valid = prepared.valid
        for attempt in (1, 2):
            try:
                return await self._through_outages(lambda: self._apply_batch(valid, prepared.work), wait_for_database)
            except INFRASTRUCTURE_ERRORS:
                raise  # only an HTTP caller's: a consumer waits them out
            except Exception as exc:  # noqa: BLE001 - isolate the poison message one by one
                if attempt == 2:
                    log.warning("batch_failed_isolating", topic=self.spec.name, size=len(valid), error=type(exc).__name__)
        return [await self._apply_alone(p, wait_for_database) for p in valid]

    async def _through_outages(self, call: Callable[[], Awaitable[T]], wait_for_database: bool) -> T:
        return await through_outages(call, wait=wait_for_database, waiting="consumer_waiting_for_database",
                                     topic=self.spec.name)

    async def _apply_alone(self, parsed: Parsed, wait_for_database: bool) -> EventResult:
        """One event of a failed batch on its own: retried, then dead-lettered with the reason."""
        max_attempts = self.host.settings.consumer_max_attempts
        failures = 0
        while True:
            try:  # outages are waited out inside: they never exhaust the retries
                [result] = await self._through_outages(lambda: self._apply_batch([parsed]), wait_for_database)
                return result
            except Rejected as exc:
                return await self._reject(parsed.incoming, exc.reason, parsed.envelope, wait_for_database)
            except INFRASTRUCTURE_ERRORS:
                raise  # only an HTTP caller's
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
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await _record_in_inbox(conn, valid, self.spec.name)
            new = [p for p, f in zip(valid, fresh) if f]
            store = self.host.store_for(conn)
            if new and self.batch_handler is not None:
                uow = UnitOfWork(store, Outbox(conn, self.host.name, keys=getattr(self.host, "keys", None),
                                               naming=self._naming_if_keyed()))
                with tracing.batch_span(self.spec.name, (p.incoming.headers for p in new), consumer=self.group):
                    await self.batch_handler(uow, work if len(new) == len(valid) and work is not None else self.prepare_work(new))
            elif self.handler is not None:
                traced = tracing.active()
                for p in new:  # per-event handlers, one transaction for the whole batch
                    token = correlation_id_var.set(p.envelope.correlation_id or str(p.envelope.id))
                    try:
                        uow = UnitOfWork(store, Outbox(conn, self.host.name, p.envelope.correlation_id or str(p.envelope.id),
                                                       keys=getattr(self.host, "keys", None),
                                                       naming=self._naming_if_keyed()))
                        context = EventContext(p.envelope, p.payload, self.host.name, self.spec.name, uow)
                        if traced:  # a span per applied event, child of the trace that wrote it (issue 17)
                            with tracing.consumer_span(self.spec.name, p.incoming.headers, consumer=self.group):
                                await self.handler(context)
                        else:
                            await self.handler(context)
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
        """Keep the message and its reason, indexed by keyed digests of whom it names, and relay
        it sealed under the dead letter's own key to the dead-letter topic (issue 15, H1)."""
        reason = scrub_text(reason)[:1000]  # a header in plain: never an input value
        naming = self._naming()
        digest = naming.bytes_digest(incoming.value)  # keyed: the dedupe key of a dead letter
        named = naming.of_message(incoming.value, incoming.key)
        headers = {
            "x-dead-letter-reason": reason,
            "x-original-topic": self.spec.name,
            "x-consumer": self.consumer_name,
            "x-original-partition": str(incoming.partition if incoming.partition is not None else ""),
            "x-original-offset": str(incoming.offset if incoming.offset is not None else ""),
        }
        relayed = incoming.value
        if len(relayed) > MAX_DEAD_LETTER_RELAY_BYTES:
            relayed = relayed[:MAX_DEAD_LETTER_RELAY_BYTES]
            headers |= {"x-original-truncated": "true", "x-original-bytes": str(len(incoming.value))}

        async def store() -> Any:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO dead_letters (topic, partition, \"offset\", consumer, reason, original, digest, key,"
                    " event_id, seal_subject, naming) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    # The same bytes failing again after a replay (done, or asked for and
                    # not yet acknowledged) reopen the row: a new failure, a new retention clock.
                    " ON CONFLICT (consumer, digest) DO UPDATE SET replayed_at = NULL, replay_requested_at = NULL,"
                    " reason = EXCLUDED.reason, received_at = now(),"
                    " seal_subject = coalesce(dead_letters.seal_subject, EXCLUDED.seal_subject)"
                    " WHERE dead_letters.replayed_at IS NOT NULL OR dead_letters.replay_requested_at IS NOT NULL"
                    " RETURNING id, seal_subject",
                    self.spec.name, incoming.partition, incoming.offset, self.consumer_name, reason,
                    incoming.value, digest, incoming.key, str(envelope.id) if envelope else None, uuid.uuid4(), named,
                )
                if row is not None:
                    await self._relay_sealed(conn, row["seal_subject"], relayed, headers)
                return row
        row = await through_outages(store, wait=wait_for_database, waiting="dead_letter_waiting_for_database",
                                    topic=self.spec.name)
        if row is not None:
            self.host.metrics.events_dead_lettered.labels(topic=self.spec.name).inc()
            log.warning("event_dead_lettered", topic=self.spec.name, consumer=self.consumer_name,
                        event_id=str(envelope.id) if envelope else None, partition=incoming.partition,
                        offset=incoming.offset, reason=reason)

    def _naming(self) -> NamingDigests:
        """The keyed digests dead letters are indexed with, under the service's suppression keys."""
        if self._naming_digests is None:
            self._naming_digests = NamingDigests(self.host.settings.suppression_keyring())
        return self._naming_digests

    def _naming_if_keyed(self) -> NamingDigests | None:
        """For a handler's outbox (an erasure finds dead letters by it); None for a unit test's
        stand-in host without suppression keys."""
        return self._naming() if hasattr(self.host.settings, "suppression_keyring") else None

    async def _relay_sealed(self, conn: asyncpg.Connection, subject: uuid.UUID, relayed: bytes,
                            headers: dict[str, str]) -> None:
        """To `<topic>-dlq` through the outbox, keyed and sealed by the dead letter's subject (no
        personal value in the key either). A host without a key store relays nothing: the
        table keeps the dead letter, and nothing goes on the bus in plain."""
        keys = getattr(self.host, "keys", None)
        if keys is None:
            log.warning("dead_letter_not_relayed", topic=self.spec.name, reason="no key store to seal with")
            return
        body = await sealed_relay(keys, subject, relayed, conn)
        await Outbox(conn, self.host.name).add_raw(self.spec.dead_letter, str(subject), body,
                                                   headers | {SUBJECT_HEADER: str(subject)})
