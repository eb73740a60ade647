"""After the memory-only broker restarts, every consumer reads the new log from its start
(SPEC §8, issue 20).

A SIGKILL empties the embedded broker and makes it forget every group, but not the clients:
a batch fetched just before can finish its transaction once the broker is back, and its
offset commit — a position far into the old log — lands on the new broker, which accepts it
(Tansu also drops commit metadata, so a commit cannot say which broker it was meant for). A
group rejoining there starts at that position; once the refilled log has grown past it, its
start is skipped: the chaos soak saw consent miss registrations and the new incarnation marker.

So each runtime watches the broker's incarnation (the last marker the launcher put on the
incarnation topic, read by a consumer of no group every `WATCH_INTERVAL_S`). When it changes,
the watch's epoch moves on and every subscriber seeks its partitions to the log's start and
commits that start (over any stale commit); an assignment that comes after the change does
the same, and a batch handed over before the change commits nothing (its offsets would be the
old broker's). The inbox turns what is read again into no-ops. The watch also hands each
marker to the service (`on_marker`), which records it and replays its outbox at once: a
consumer held in a long batch reached the marker late, and the replay with it. A broker nobody marks
(Apache Kafka) has no incarnation and never changes.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from shared.logging import get_logger
from shared.messaging.parsing import Incoming, parse
from shared.messaging.topics import topic as topic_spec

log = get_logger(__name__)
INCARNATION_TOPIC = "rekisteri-broker-incarnation"
WATCH_INTERVAL_S = 1.0
READ_TIMEOUT_MS = 5000


class IncarnationReader:
    """The broker's current incarnation: the newest marker on the incarnation topic ("" when
    there is none), read by a consumer of no group that seeks to each partition's end.

    It asks for the topic only once a metadata request for all topics (which creates nothing)
    shows it exists, and lets go of it after each read: a request naming a missing topic makes
    Tansu create it with its default partition count, before the launcher re-created the
    catalogue's topics on a restarted broker."""

    def __init__(self, bootstrap_servers: str, client_options: dict[str, Any] | None = None) -> None:
        self._options = dict(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **(client_options or {}))
        self._consumer: AIOKafkaConsumer | None = None
        self.previous_drained = False  # what the newest marker read says of the broker before it

    async def current(self) -> str:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self._options)
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        cluster = await consumer._client.fetch_all_metadata()  # all topics' metadata, fresh
        partitions = [TopicPartition(INCARNATION_TOPIC, p) for p in
                      sorted(cluster.partitions_for_topic(INCARNATION_TOPIC) or ())]
        if not partitions:
            return ""
        consumer.assign(partitions)
        try:
            return await self._newest(consumer, partitions)
        finally:
            consumer.unsubscribe()

    async def _newest(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> str:
        newest: tuple[Any, str, bool] | None = None
        for tp, end in (await consumer.end_offsets(partitions)).items():
            if end <= 0:
                continue
            consumer.seek(tp, end - 1)  # Tansu's end offset is the last batch's base offset + 1
            records = (await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS)).get(tp, [])
            if not records:
                raise TimeoutError("an incarnation marker could not be read")
            last = records[-1]
            marker = parse(topic_spec(INCARNATION_TOPIC), Incoming(last.value or b"", last.key, last.partition,
                                                                  last.offset)).payload
            if newest is None or marker.started_at > newest[0]:  # type: ignore[attr-defined]
                newest = (marker.started_at, str(marker.incarnation), marker.previous_drained)  # type: ignore[attr-defined]
        if newest is None:
            return ""
        self.previous_drained = newest[2]
        return newest[1]

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


MarkerSeen = Callable[[uuid.UUID, bool], Awaitable[object]]


class IncarnationWatch:
    """The incarnation last seen and an epoch that moves on at each change; the subscribers'
    listeners act on a change (see the module).

    Each marker read is also handed to `on_marker` (incarnation, previous broker drained) until
    it took it: the service records it and replays its outbox without waiting for its consumer
    to reach the marker on the topic (a consumer busy with a long batch, or one that had not
    read the first marker before the broker died, replayed late or never)."""

    def __init__(self, reader: IncarnationReader, on_marker: MarkerSeen | None = None) -> None:
        self.reader = reader
        self.on_marker = on_marker
        self.known: str | None = None  # None until first read
        self.handed: str | None = None  # the marker `on_marker` took last
        self.epoch = 0
        self.listeners: list[FromStartAfterBrokerRestart] = []

    async def check(self) -> bool:
        """Read the current incarnation; True (and every subscriber reset) when it changed."""
        current = await self.reader.current()
        changed = self.known is not None and current != self.known
        if changed:
            log.warning("broker_incarnation_changed_reading_from_start", previous=self.known or None,
                        current=current or None)
        self.known = current
        if changed:
            self.epoch += 1
            for listener in self.listeners:
                await listener.catch_up()
        if current and current != self.handed and self.on_marker is not None:
            await self.on_marker(uuid.UUID(current), self.reader.previous_drained)
            self.handed = current
        return changed

    async def run(self, stopping: asyncio.Event, interval_s: float = WATCH_INTERVAL_S) -> None:
        while not stopping.is_set():
            try:
                await self.check()
            except Exception as exc:  # noqa: BLE001 - the broker may be down: try again
                log.debug("broker_incarnation_unreadable", error=type(exc).__name__)
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)
            except TimeoutError:
                pass


class FromStartAfterBrokerRestart(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """One subscriber's part: after an incarnation change, its partitions are read from the
    log's start, at once if assigned, else at the next assignment."""

    def __init__(self, watch: IncarnationWatch, group: str) -> None:
        self.watch = watch
        self.group = group
        self.epoch = 0  # the watch's epoch this subscriber's positions belong to
        self.subscriber: Any = None  # FastStream's subscriber; its `consumer` exists once started
        watch.listeners.append(self)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.epoch != self.watch.epoch and assigned:
            await self.catch_up(assigned)

    async def catch_up(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        consumer: AIOKafkaConsumer | None = getattr(self.subscriber, "consumer", None)
        if consumer is None:
            return
        epoch = self.watch.epoch
        wanted = sorted(partitions if partitions is not None else consumer.assignment(),
                        key=lambda tp: (tp.topic, tp.partition))
        if not wanted:
            return  # rebalancing: the next assignment catches up
        starts = await consumer.beginning_offsets(wanted)
        for tp in wanted:
            consumer.seek(tp, starts[tp])
        try:  # over any commit a batch of the old broker left: a later assignment starts here too
            await consumer.commit(dict(starts))
        except Exception as exc:  # noqa: BLE001 - the positions are set; a rebalance catches up again
            log.warning("offset_reset_commit_failed", group=self.group, error=type(exc).__name__)
            return
        self.epoch = epoch
        log.warning("reading_from_start_after_broker_restart", group=self.group, partitions=len(wanted))
