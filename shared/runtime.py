"""One service process: its settings, database pool, broker, outbox relay, consumers and
background jobs, started and stopped together (graceful shutdown, SPEC §7)."""
from __future__ import annotations

import asyncio
import gc
import uuid
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator, Awaitable, Callable

import asyncpg
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from shared.db import READINESS_CHECK_TIMEOUT_S, BoundStore, answers, create_pool, migrate
from shared.messaging.consumer import InboxConsumer
from shared.messaging.handling import BatchHandler, BatchPrepare, BatchValidator, Handler, UnitOfWork
from shared.messaging.parsing import Incoming, parse
from shared.errors import Rejected
from shared.messaging.dead_letters import prune_dead_letters_job
from shared.messaging.incarnation import (INCARNATION_TOPIC, FromStartAfterBrokerRestart, IncarnationReader,
                                          IncarnationWatch)
from shared.messaging.kafka import create_broker
from shared.logging import get_logger
from shared.metrics import Metrics
from shared.messaging.outbox import Outbox, OutboxRelay
from shared.messaging.retry import RESTART
from shared.messaging.signing import keyring
from shared.privacy import ledger
from shared.messaging.pipeline import BatchPipeline, next_offsets
from shared.privacy.keystore import CachingKeyStore, PostgresKeyStore
from shared.privacy.naming import NamingDigests
from shared.settings import ServiceSettings
from shared.messaging.topics import topic as topic_spec

log = get_logger(__name__)
BackgroundJob = Callable[["ServiceRuntime"], Awaitable[None]]


async def _undecoded_batch(msg: KafkaMessage) -> object:
    """The batch handler parses `raw_message` itself; FastStream's default decoder would
    json-decode every body of the batch first, for nothing (a third of the bulk path's CPU)."""
    return msg.body


@asynccontextmanager
async def _acknowledge(msg: KafkaMessage, fetched_in: int, watch: IncarnationWatch) -> AsyncIterator[None]:
    """Commit the offsets after the handler's database commit; on failure, redeliver.

    A batch handed over before the broker's incarnation changed (`fetched_in` is the watch's
    epoch then) commits nothing: its offsets are the old broker's (shared/messaging/incarnation.py).
    A commit that fails (the group rebalanced, the broker restarted) is only logged: the
    message comes again and the inbox makes it a no-op. The consumer never stops for it.
    """
    try:
        yield
    except BaseException:
        with suppress(Exception):
            await msg.nack()  # seek back: the message is delivered again
        raise
    if fetched_in != watch.epoch:
        return
    try:
        consumer: Any = msg.consumer  # aiokafka's consumer: commit takes the offsets
        await consumer.commit(next_offsets(msg.raw_message))
    except Exception as exc:  # noqa: BLE001
        log.warning("offset_commit_failed_will_redeliver", error=type(exc).__name__)


# Above what the batches in flight keep alive at once (2 x 2,000 events of a bulk topic, some
# 25 tracked objects each): a collection triggered mid-batch would walk them all to free nothing.
YOUNG_GENERATION_THRESHOLD = 200_000


def tune_garbage_collector() -> None:
    """Collect the youngest generation after 200,000 net allocations rather than 700.

    CPython counts allocations minus frees of tracked objects and collects when the count
    passes the threshold; the collection walks every young object still alive. A consumer's
    objects die young and reference counting frees them, so the count grows only with what a
    batch keeps alive at once. Measured on billing's ingestion (2 cores, idle, issue 21): with
    700, 5.5 s of collection in an 8 s run; with 50,000, 11-15 collections of ~45 ms each,
    23,700-28,200 events/s; with 200,000, none during the run and 28,800-32,900 events/s, the
    peak RSS unchanged (302 MB against 308)."""
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 20, 100)




class ServiceRuntime:
    def __init__(self, name: str, settings: ServiceSettings, migrations_dir: Path | None,
                 storage: ModuleType | tuple[ModuleType, ...] | None = None) -> None:
        self.name = name
        self.storage = storage  # the service's SQL module; handlers reach it through `store_for`
        self.settings = settings
        self.migrations_dir = migrations_dir
        self.metrics = Metrics(name)
        self.broker = create_broker(settings, client_id=f"rekisteri-{name}")
        self.consumers: dict[str, InboxConsumer] = {}
        self._pool: asyncpg.Pool | None = None
        # Data keys that seal and open personal fields (issue 15), over the service's own pool.
        self.keys: CachingKeyStore | None = None
        # Keyed digests an erasure finds the person's dead letters by (issue 15, H1).
        self.naming = NamingDigests(settings.suppression_keyring())
        self.relay: OutboxRelay | None = None
        self._jobs: list[tuple[str, BackgroundJob]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        self._declared = False
        self.pipelines: dict[str, BatchPipeline] = {}  # bulk topic -> its batch transactions
        self._incarnation_dead_letters = InboxConsumer(self, INCARNATION_TOPIC)  # applies nothing: dead-letters only
        # After a broker restart every subscriber reads the new log from its start (SPEC §8).
        # The watch also hands each marker it reads to `observe_incarnation`, as the consumer does.
        self.incarnation_watch = IncarnationWatch(
            IncarnationReader(settings.kafka_bootstrap_servers, settings.kafka_client_options()),
            on_marker=lambda incarnation, drained: self.observe_incarnation(incarnation, replay=not drained))
        self._observing = asyncio.Lock()  # the watch and the consumer may see one marker at once
        self.started = False

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    def store_for(self, conn: asyncpg.Connection) -> Any:
        """The service's store in this transaction (a runtime without one hands the connection)."""
        return BoundStore(self.storage, conn) if self.storage is not None else conn

    def unit_of_work(self, conn: asyncpg.Connection, correlation_id: str | None = None) -> UnitOfWork:
        """For an HTTP route's transaction: the store and the outbox bound to it."""
        return UnitOfWork(self.store_for(conn), Outbox(conn, self.name, correlation_id, keys=self.keys,
                                                       naming=self.naming))

    # -- wiring -----------------------------------------------------------------
    def _subscriber_options(self, group_id: str, fetch_max_wait_ms: int,
                            listener: FromStartAfterBrokerRestart) -> dict[str, Any]:
        return dict(
            group_id=group_id,
            listener=listener,  # after a broker restart: from the new log's start
            ack_policy=AckPolicy.MANUAL,  # offset committed by `_acknowledge`, after the handler's commit
            auto_offset_reset="earliest",  # no committed offset (new group, forgetful broker): from the start
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
        )

    def subscribe(self, topic_name: str, handler: Handler) -> InboxConsumer:
        """Apply each event of `topic_name` with `handler`, exactly once in effect.

        All of a service's per-event subscriptions share one consumer (one group join),
        declared when the runtime starts.
        """
        if self.started:
            raise RuntimeError("subscribe before the runtime starts")
        if self.name in topic_spec(topic_name).bulk_consumers:  # the catalogue (and AsyncAPI) says bulk
            raise RuntimeError(f"{topic_name} is consumed in bulk by {self.name}: use subscribe_batch")
        consumer = InboxConsumer(self, topic_name, handler=handler)
        self.consumers[topic_name] = consumer
        return consumer

    def subscribe_batch(self, topic_name: str, handler: BatchHandler, *, prepare: BatchPrepare | None = None,
                        max_records: int = 2000, validate: BatchValidator | None = None) -> InboxConsumer:
        """Apply events of a bulk topic in batches, one transaction per batch (own consumer).

        `validate` and `prepare` run before the transaction. An event `validate` gives a reason
        for is dead-lettered (and reported to an HTTP batch caller), never recorded in the inbox,
        so a replay retries it; `handler` gets what `prepare` made of the new events.
        """
        spec = topic_spec(topic_name)
        if self.name not in spec.bulk_consumers:  # its group id is the catalogue's (and AsyncAPI's)
            raise RuntimeError(f"{topic_name} does not list {self.name} in bulk_consumers (shared/messaging/topics.py)")
        consumer = InboxConsumer(self, topic_name, batch_handler=handler, prepare=prepare, validate=validate)
        self.consumers[topic_name] = consumer
        pipeline = BatchPipeline(consumer, depth=self.settings.batch_transactions_in_flight)
        self.pipelines[topic_name] = pipeline

        group = spec.consumer_group(self.name)
        listener = FromStartAfterBrokerRestart(self.incarnation_watch, group)
        pipeline.epoch = lambda: self.incarnation_watch.epoch
        # Full batches: the broker waits (up to the topic's fetch wait) for 256 KiB before answering.
        subscriber = self.broker.subscriber(
            topic_name, batch=True, max_records=max_records, fetch_min_bytes=256 * 1024,
            batch_timeout_ms=spec.fetch_max_wait_ms, title=f"{self.name}:{topic_name}",
            decoder=_undecoded_batch, **self._subscriber_options(group, spec.fetch_max_wait_ms, listener))
        listener.subscriber = subscriber

        @subscriber  # type: ignore[untyped-decorator]  # **options: faststream's overloads tie
        async def on_batch(msg: KafkaMessage) -> None:
            """Parsed and prepared while earlier batches' transactions run (see `BatchPipeline`)."""
            epoch = self.incarnation_watch.epoch  # as the batch is handed over
            batch = [Incoming(r.value or b"", r.key, r.partition, r.offset, r.headers) for r in msg.raw_message]
            try:
                prepared = await consumer.prepare(batch)
            except BaseException:
                await pipeline.drain()
                with suppress(Exception):
                    await msg.nack()
                raise
            await pipeline.submit(prepared, msg, epoch)

        return consumer

    def add_job(self, name: str, job: BackgroundJob) -> None:
        """A background loop (scheduler, reporter) started after the runtime is up."""
        self._jobs.append((name, job))

    def _declare_event_subscriber(self, max_records: int = 500) -> None:
        """One consumer for all per-event topics. It takes what the broker has ready (a single
        event at low traffic, up to `max_records` under load) and applies each topic's share
        in one transaction; a batch that fails is retried event by event, so one bad event
        is dead-lettered alone."""
        single = {name: c for name, c in self.consumers.items() if c.handler is not None}
        topics = [*single, INCARNATION_TOPIC]

        listener = FromStartAfterBrokerRestart(self.incarnation_watch, self.name)
        subscriber = self.broker.subscriber(
            *topics, batch=True, max_records=max_records, decoder=_undecoded_batch, title=f"{self.name}:events",
            **self._subscriber_options(self.name, self.settings.kafka_fetch_max_wait_ms, listener))
        listener.subscriber = subscriber

        @subscriber  # type: ignore[untyped-decorator]  # **options: faststream's overloads tie
        async def on_events(msg: KafkaMessage) -> None:
            epoch = self.incarnation_watch.epoch  # as the batch is handed over
            by_topic: dict[str, list[Incoming]] = {}
            for raw in msg.raw_message:
                by_topic.setdefault(raw.topic, []).append(Incoming(raw.value or b"", raw.key, raw.partition, raw.offset,
                                                                        raw.headers))
            async with _acknowledge(msg, epoch, self.incarnation_watch):
                for topic_name, incoming in by_topic.items():
                    if topic_name == INCARNATION_TOPIC:
                        for marker in incoming:
                            await self._on_incarnation(marker)
                    else:
                        await single[topic_name].apply(incoming)

    async def _on_incarnation(self, incoming: Incoming) -> None:
        """Replay the outbox when the embedded broker comes back empty (SPEC §8)."""
        try:
            parsed = parse(topic_spec(INCARNATION_TOPIC), incoming)
        except Rejected as exc:  # poison: kept with its reason like on every other topic
            await self._incarnation_dead_letters.dead_letter(incoming, exc.reason)
            return
        marker = parsed.payload
        await self.observe_incarnation(marker.incarnation, replay=not marker.previous_drained)  # type: ignore[attr-defined]

    async def observe_incarnation(self, incarnation: uuid.UUID, *, replay: bool = True) -> bool:
        """Record the broker's incarnation; a change means the broker lost its log, and
        unless it was drained first, what this service published is replayed."""
        async with self._observing:
            previous = await self.pool.fetchval("SELECT incarnation FROM broker_state")
            if previous == incarnation:
                return False
            await self.pool.execute(
                "INSERT INTO broker_state (singleton, incarnation, seen_at) VALUES (true, $1, now())"
                " ON CONFLICT (singleton) DO UPDATE SET incarnation = EXCLUDED.incarnation, seen_at = now()",
                incarnation,
            )
        if previous is not None and self.relay is not None and replay:
            log.warning("broker_restarted_replaying_outbox", previous=str(previous), current=str(incarnation))
            self.relay.request_replay()
            return True
        return False

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        keyring().require(self.name, self.consumers)  # refuse to start unable to sign or verify commands
        tune_garbage_collector()
        self._pool = await create_pool(s.database_url, s.schema, min_size=s.db_pool_min, max_size=s.db_pool_max,
                                       acquire_timeout_s=s.db_acquire_timeout_s)
        await migrate(self._pool, s.schema, self.migrations_dir)
        unfinished = await ledger.restore_in_progress(self._pool)
        if unfinished is not None:  # restored data of erased persons must never be served (SPEC §9)
            await self._pool.close()
            self._pool = None
            raise RuntimeError(f"a restore of {unfinished} is unfinished: run `rekisteri restore` again before starting")
        self.keys = CachingKeyStore(PostgresKeyStore(self._pool, s.master_keys()))
        self.relay = OutboxRelay(
            self._pool, self.broker, s.schema, self.metrics, database_url=s.database_url,
            batch_size=s.outbox_batch_size, poll_interval_s=s.outbox_poll_interval_s,
            retention_days=s.outbox_retention_days,
        )
        if not self._declared:
            self._declare_event_subscriber()
            self._declared = True
        try:  # the broker consumed from: a later change of incarnation means it restarted
            await self.incarnation_watch.check()
        except Exception as exc:  # noqa: BLE001 - the watch reads it once the broker answers
            log.warning("broker_incarnation_unreadable", error=type(exc).__name__)
        await self.broker.start()
        await self.relay.start()
        for name, job in [*self._jobs, ("consumer-lag", _report_consumer_lag),
                          ("dead-letter-prune", prune_dead_letters_job), ("broker-incarnation", _watch_incarnation)]:
            self._tasks.append(asyncio.create_task(self._run_job(name, job), name=f"{self.name}-{name}"))
        self.started = True
        log.info("service_started", port=s.port, consumers=sorted(self.consumers))

    async def _run_job(self, name: str, job: BackgroundJob) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                await job(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a job must outlive one failure
                failures += 1
                log.error("job_failed_restarting", job=name, error=type(exc).__name__, attempt=failures)
                await RESTART.sleep(failures)

    async def stop(self) -> None:
        """Stop taking work, finish the message in hand, relay what is committed, close."""
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pipeline in self.pipelines.values():
            pipeline.close()
        await self.broker.stop()
        for pipeline in self.pipelines.values():  # let batch transactions in flight finish (their offsets redeliver)
            await pipeline.drain()
        if self.relay is not None:
            await self.relay.stop()
        await self.incarnation_watch.reader.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self.started = False
        log.info("service_stopped")

    async def readiness(self) -> dict[str, bool]:
        """Both checks at once, each bounded by READINESS_CHECK_TIMEOUT_S: with the broker gone
        its ping takes the whole bound, and the answer must not wait for it twice."""
        async def broker() -> bool:
            return bool(await self.broker.ping(timeout=READINESS_CHECK_TIMEOUT_S))

        results = await asyncio.gather(answers(self.pool), broker(), return_exceptions=True)
        return {name: result is True for name, result in zip(("database", "broker"), results)}

    async def refresh_gauges(self) -> None:
        if self.relay is not None and self._pool is not None:
            self.metrics.outbox_backlog.set(await self.relay.backlog())
            self.metrics.outbox_set_aside.set(await self.relay.set_aside())


async def _watch_incarnation(runtime: ServiceRuntime) -> None:
    await runtime.incarnation_watch.run(runtime.stopping)


async def _report_consumer_lag(runtime: ServiceRuntime, interval_s: float = 30.0) -> None:
    """Keep `rekisteri_consumer_lag` current for this service's groups (approximate on Tansu)."""
    from shared.messaging.lag import consumer_lag

    groups = [runtime.name] + [f"{runtime.name}.{t}" for t, c in runtime.consumers.items() if c.batch_handler]
    while not runtime.stopping.is_set():
        try:
            await asyncio.wait_for(runtime.stopping.wait(), timeout=interval_s)
            return
        except TimeoutError:
            pass
        try:
            for entry in await consumer_lag(runtime.settings.kafka_bootstrap_servers, groups,
                                            client_options=runtime.settings.kafka_client_options()):
                runtime.metrics.consumer_lag.labels(topic=entry.topic).set(entry.lag)
                runtime.metrics.set_consumer_lag(entry.group, entry.topic, entry.by_partition)
        except Exception as exc:  # noqa: BLE001 - a metric must never take the service down
            log.debug("consumer_lag_unavailable", error=type(exc).__name__)
