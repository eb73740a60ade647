"""Transactional outbox: events are written with the state change, relayed afterwards.

`Outbox.add` runs inside the caller's transaction, so an event exists if and only if its
state change committed; it is the one way a service publishes, and the relay is the only
producer of the register's events. `OutboxRelay` publishes unpublished rows in `seq` order (hence
in order per key) and marks them; a crash between publish and mark re-publishes, and
consumers' inboxes turn that into a no-op. One relay per schema is active at a time
(advisory lock), so several replicas keep the order. Relayed rows are kept for a window
and re-published if the broker lost them (SPEC §8).
"""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from typing import Any, Sequence

import asyncpg
from faststream.kafka import KafkaBroker

from shared.messaging.envelope import Envelope, utcnow
from shared.messaging.events import Payload
from shared.logging import correlation_id_var, get_logger
from shared.metrics import Metrics
from shared.messaging.retry import RESTART
from shared.messaging.signing import SIGNED_TOPICS, keyring
from shared.messaging.topics import CATALOGUE, EVENT_TYPES, Topic
from shared import tracing
from shared.messaging.dead_letters import erase_naming
from shared.privacy.keystore import KeyStore
from shared.privacy.naming import NamingDigests
from shared.privacy.sealing import needs_sealing, seal_fields, subject_of

log = get_logger(__name__)


# Topics whose events carry personal fields: their copies go at the person's erasure.
PERSONAL_TOPICS = sorted(t.name for t in CATALOGUE.values() if t.personal_data)


def message_key(spec: Topic, data: dict[str, Any], event_id: uuid.UUID) -> str:
    """The Kafka key: the entity whose order matters (SPEC §4). An event without it (an
    opt-out naming only contact points) is keyed by its own id: spread over partitions, and
    no personal value in the key."""
    value = data.get(spec.key)
    return str(value) if value is not None else str(event_id)


def build_envelope(
    payload: Payload,
    *,
    source: str,
    correlation_id: str | None = None,
    event_id: uuid.UUID | None = None,
) -> tuple[str, str, Envelope]:
    """(topic, key, envelope) for a catalogued payload, its fields in plain: what another
    company system may send (the register's own services publish through `Outbox`, sealed)."""
    spec = _spec_of(payload)
    event_id = event_id or uuid.uuid4()
    return _assemble(spec, json.loads(payload.model_dump_json()), source, correlation_id, event_id)


async def build_sealed_envelope(
    payload: Payload,
    keys: KeyStore | None,
    *,
    source: str,
    correlation_id: str | None = None,
    event_id: uuid.UUID | None = None,
    conn: asyncpg.Connection | None = None,
) -> tuple[str, str, Envelope]:
    """`build_envelope` with the topic's personal fields sealed under the subject's data key
    (crypto-shredding, SPEC §9, issue 15), before a command is signed: the signature covers
    what travels. Without a key store a personal event is refused, never sent in plain."""
    spec = _spec_of(payload)
    event_id = event_id or uuid.uuid4()
    data = json.loads(payload.model_dump_json())
    if spec.sealed_fields and needs_sealing(data, spec.sealed_fields):
        if keys is None:
            raise SealingUnavailable(f"{spec.name} carries personal fields and this outbox has no key store")
        data = await seal_fields(keys, data, spec.sealed_fields, subject_of(data, spec.seal_subject, event_id), conn)
    return _assemble(spec, data, source, correlation_id, event_id)


class SealingUnavailable(RuntimeError):
    """A personal event was to be published by an outbox without the key store (a wiring bug)."""


def _spec_of(payload: Payload) -> Topic:
    spec = EVENT_TYPES.get(type(payload))
    if spec is None:
        raise KeyError(f"{type(payload).__name__} is not the payload of any catalogued topic")
    return spec


def _assemble(spec: Topic, data: dict[str, Any], source: str, correlation_id: str | None,
              event_id: uuid.UUID) -> tuple[str, str, Envelope]:
    key = message_key(spec, data, event_id)
    envelope = Envelope(
        id=event_id,
        type=spec.name,
        source=source,
        time=utcnow(),
        subject=key,
        schema_version=spec.schema_version,
        data=data,
        correlation_id=correlation_id or correlation_id_var.get(),
    )
    if spec.name in SIGNED_TOPICS:  # commands carry their publisher's signature (SPEC §9)
        envelope = keyring().sign(envelope)
    return spec.name, key, envelope


class Outbox:
    """The one way a service publishes an event: written in the caller's open transaction, so
    it exists if and only if the change it announces committed; the relay sends it later.

    Bound to one connection (the transaction), the publishing service, the correlation id
    of what caused it, and the key store that seals personal fields (`keys`; the runtime's).
    `add_all` writes many in one round trip (mass commands)."""

    def __init__(self, conn: asyncpg.Connection, source: str, correlation_id: str | None = None, *,
                 keys: KeyStore | None = None, naming: NamingDigests | None = None) -> None:
        self.conn = conn
        self.source = source
        self.correlation_id = correlation_id
        self.keys = keys
        self.naming = naming  # finds the dead letters naming a person at erasure (`erase_copies`)

    async def add(self, payload: Payload, *, event_id: uuid.UUID | None = None) -> Envelope:
        [envelope] = await self.add_all([payload], event_ids=[event_id] if event_id else None)
        return envelope

    async def add_all(self, payloads: Sequence[Payload], *, event_ids: Sequence[uuid.UUID] | None = None,
                      correlation_ids: Sequence[str | None] | None = None) -> list[Envelope]:
        """Write events in order; `correlation_ids` gives each its own (one per command, say)."""
        built = [await build_sealed_envelope(
                     p, self.keys, source=self.source, conn=self.conn, event_id=event_ids[i] if event_ids else None,
                     correlation_id=(correlation_ids[i] if correlation_ids else None) or self.correlation_id)
                 for i, p in enumerate(payloads)]
        if built:
            await self.conn.execute(
                "INSERT INTO outbox (event_id, topic, key, envelope, traceparent)"
                " SELECT *, $5::text FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])",
                [e.id for _, _, e in built], [t for t, _, _ in built], [k for _, k, _ in built],
                [e.to_json_dict() for _, _, e in built], tracing.current_traceparent())
        return [e for _, _, e in built]

    async def add_raw(self, topic: str, key: str, raw: bytes, headers: dict[str, str] | None = None) -> None:
        """A message that is not an envelope of ours: a dead letter's original bytes."""
        await self.conn.execute(
            "INSERT INTO outbox (event_id, topic, key, raw, headers, traceparent) VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.uuid4(), topic, key, raw, headers or {}, tracing.current_traceparent(),
        )

    def naming_tokens(self, emails: Sequence[str], phones: Sequence[str]) -> list[str]:
        """Keyed digests of contact points under every suppression key, for `contact-erased`:
        the services that never held the values find the person's dead letters by them."""
        return contact_point_tokens(self.naming, emails, phones)

    async def erase_copies(self, person_ids: Sequence[uuid.UUID], other_keys: Sequence[str] = (), *,
                           emails: Sequence[str] = (), phones: Sequence[str] = (),
                           naming_digests: Sequence[str] = ()) -> None:
        """At erasure (R7, SPEC §9): drop this service's own copies of the persons' personal
        events (outbox rows kept for replay, relayed dead letters) and their dead letters, so
        a replay after a broker loss cannot put their data back on the bus. `other_keys`: the
        other message keys that name them here (an import's external ref, a request id).
        Dead letters go also when they name a person id or one of `emails`/`phones` (what the
        service knows of them) or `naming_digests` (keyed digests it keeps instead), found by
        their keyed `naming` digests; each one's key goes with it (issue 15, H1)."""
        tokens = [*(self.naming.tokens(person_ids, emails, phones) if self.naming else ()), *naming_digests]
        await erase_naming(self.conn, tokens)
        ids = [str(p) for p in person_ids]
        keys = [*ids, *other_keys]
        await self.conn.execute(
            "DELETE FROM outbox WHERE (topic = ANY($2::text[]) AND (key = ANY($1::text[])"
            "   OR envelope -> 'data' ->> 'person_id' = ANY($3::text[])))"
            " OR (raw IS NOT NULL AND key = ANY($1::text[]))",
            keys, PERSONAL_TOPICS, ids)
        await self.conn.execute("DELETE FROM dead_letters WHERE key = ANY($1::bytea[])", [k.encode() for k in keys])


def contact_point_tokens(naming: NamingDigests | None, emails: Sequence[str], phones: Sequence[str]) -> list[str]:
    """The naming tokens of contact points alone (ids each service has itself); none without keys."""
    return naming.tokens((), emails, phones) if naming else []


class RecordingOutbox:
    """An in-memory outbox for unit tests of one handler: keeps what was published, in order."""

    def __init__(self, source: str = "test", naming: NamingDigests | None = None) -> None:
        self.source = source
        self.naming = naming
        self.published: list[Envelope] = []
        self.raw: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.erased_copies: list[tuple[uuid.UUID, tuple[str, ...]]] = []
        self.erased_naming: list[str] = []  # the contact points and digests dead letters were erased by

    async def add(self, payload: Payload, *, event_id: uuid.UUID | None = None) -> Envelope:
        [envelope] = await self.add_all([payload], event_ids=[event_id] if event_id else None)
        return envelope

    async def add_all(self, payloads: Sequence[Payload], *, event_ids: Sequence[uuid.UUID] | None = None,
                      correlation_ids: Sequence[str | None] | None = None) -> list[Envelope]:
        built = [build_envelope(p, source=self.source, event_id=event_ids[i] if event_ids else None,
                                correlation_id=correlation_ids[i] if correlation_ids else None)[2]
                 for i, p in enumerate(payloads)]
        self.published += built
        return built

    async def add_raw(self, topic: str, key: str, raw: bytes, headers: dict[str, str] | None = None) -> None:
        self.raw.append((topic, key, raw, headers or {}))

    def naming_tokens(self, emails: Sequence[str], phones: Sequence[str]) -> list[str]:
        return contact_point_tokens(self.naming, emails, phones)

    async def erase_copies(self, person_ids: Sequence[uuid.UUID], other_keys: Sequence[str] = (), *,
                           emails: Sequence[str] = (), phones: Sequence[str] = (),
                           naming_digests: Sequence[str] = ()) -> None:
        self.erased_copies += [(p, tuple(other_keys)) for p in person_ids]
        self.erased_naming += [*emails, *phones, *naming_digests]

    def of(self, topic: str) -> list[dict[str, Any]]:
        """The `data` of every event published to `topic`."""
        return [e.data for e in self.published if e.type == topic]


# Under the producer's 1 MB request limit: a bigger event would fail to publish forever.
MAX_RELAY_BYTES = 900 * 1024


class OutboxRelay:
    """Publishes committed outbox rows to Kafka, in order, at least once."""

    def __init__(self, pool: asyncpg.Pool, broker: KafkaBroker, schema: str, metrics: Metrics,
                 *, database_url: str, batch_size: int = 500, poll_interval_s: float = 0.25, retention_days: int = 7) -> None:
        self.pool = pool
        self.database_url = database_url
        self._replay_requested = False
        self.broker = broker
        self.schema = schema
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention = timedelta(days=retention_days)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_conn: asyncpg.Connection | None = None
        self._listen_conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        for conn in (self._listen_conn, self._lock_conn):
            if conn is not None and not conn.is_closed():
                await conn.close()

    def wake(self) -> None:
        self._wake.set()

    def request_replay(self) -> None:
        """Ask the active relay to re-publish what it retains, before anything newer."""
        self._replay_requested = True
        self._wake.set()

    async def backlog(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_reason IS NULL"))

    async def set_aside(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_reason IS NOT NULL"))

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._hold_leadership_and_relay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database or broker away: nothing is marked, retry
                failures += 1
                log.warning("outbox_relay_waiting", schema=self.schema, error=type(exc).__name__)
                await RESTART.sleep(min(failures, 2))  # back within a couple of seconds of a broker's return

    async def _hold_leadership_and_relay(self) -> None:
        self._lock_conn = await self.pool.acquire()
        try:
            while not self._stopping.is_set():
                if await self._lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"outbox:{self.schema}"):
                    break
                await self._sleep(1.0)  # another replica relays; stand by
            self._listen_conn = await asyncpg.connect(self.database_url)
            await self._listen_conn.add_listener(f"outbox_{self.schema}", lambda *_: self._wake.set())
            last_prune = 0.0
            loop = asyncio.get_running_loop()
            while not self._stopping.is_set():
                if self._replay_requested:
                    self._replay_requested = False
                    await self.replay_retained()
                published = await self.relay_once()
                if loop.time() - last_prune > 3600:
                    await self.prune()
                    last_prune = loop.time()
                if published < self.batch_size:
                    self._wake.clear()
                    await self._sleep(self.poll_interval_s)
        finally:
            if self._listen_conn is not None and not self._listen_conn.is_closed():
                await self._listen_conn.close()
            if not self._lock_conn.is_closed():
                await self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
            await self.pool.release(self._lock_conn)
            self._lock_conn = None

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; returns how many were handled. A row set
        aside (too large for the broker) stays unpublished and visible until an operator
        re-publishes it (`rekisteri outbox --republish`); it never blocks the rows behind it."""
        rows = await self.pool.fetch(
            "SELECT seq, topic, key, envelope, raw, headers, traceparent FROM outbox"
            " WHERE published_at IS NULL AND failed_reason IS NULL ORDER BY seq LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        sent = await self._publish(rows)
        await self.pool.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", sent)
        return len(rows)

    async def _publish(self, rows: list[asyncpg.Record]) -> list[int]:
        """Send rows in order; the seqs sent (acknowledged by the broker), without those set aside."""
        futures, sent = [], []
        for row in rows:
            envelope = row["envelope"]
            if envelope is not None:
                body = json.dumps(envelope, separators=(",", ":")).encode()
                correlation_id = envelope.get("correlation_id") or str(envelope.get("id"))
            else:
                body, correlation_id = row["raw"], None
            if len(body) > MAX_RELAY_BYTES:
                await self._set_aside(row["seq"], row["topic"], len(body))
                continue
            headers = {"content-type": "application/json", **row["headers"]}
            traceparent = row.get("traceparent")
            if traceparent is not None:  # the writing transaction's trace (issue 17)
                headers["traceparent"] = traceparent
            futures.append(
                await self.broker.publish(
                    body,
                    row["topic"],
                    key=row["key"].encode(),
                    headers=headers,
                    correlation_id=correlation_id,
                    no_confirm=True,
                )
            )
            sent.append(row)
        await asyncio.gather(*futures)
        for row in sent:
            self.metrics.events_published.labels(topic=row["topic"]).inc()
        return [row["seq"] for row in sent]

    async def _set_aside(self, seq: int, topic: str, size: int) -> None:
        """Never block the events behind one that cannot be published: keep it, with a reason."""
        reason = f"too large for the broker: {size} bytes (limit {MAX_RELAY_BYTES})"
        await self.pool.execute("UPDATE outbox SET failed_reason = $2 WHERE seq = $1", seq, reason)
        log.error("outbox_event_set_aside", schema=self.schema, topic=topic, seq=seq, reason=reason)

    async def replay_retained(self) -> int:
        """Re-publish every retained relayed row, in order: the broker lost its log (SPEC §8)."""
        total = 0
        last_seq = 0
        while True:
            rows = await self.pool.fetch(
                "SELECT seq, topic, key, envelope, raw, headers, traceparent FROM outbox"
                " WHERE published_at IS NOT NULL AND seq > $1 ORDER BY seq LIMIT $2",
                last_seq, self.batch_size,
            )
            if not rows:
                break
            await self._publish(rows)
            last_seq = rows[-1]["seq"]
            total += len(rows)
        if total:
            log.warning("outbox_replayed", schema=self.schema, events=total)
        return total

    async def prune(self) -> int:
        status = await self.pool.execute(
            "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1", utcnow() - self.retention
        )
        return int(status.split()[-1])
