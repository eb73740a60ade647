"""The broker incarnation watch's rules (issue 20, SPEC §8), with the reader and the Kafka
consumer stood in for; tests/integration/test_broker_restart.py runs them on the real broker."""
from __future__ import annotations

import uuid

from aiokafka import TopicPartition

from shared.messaging.incarnation import FromStartAfterBrokerRestart, IncarnationWatch

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Reader:
    def __init__(self) -> None:
        self.value = "a"
        self.previous_drained = False

    async def current(self) -> str:
        return self.value


class Consumer:
    def __init__(self) -> None:
        self.assigned = {T0, T1}
        self.seeks: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


def watched() -> tuple[Reader, IncarnationWatch, FromStartAfterBrokerRestart, Consumer]:
    reader, consumer = Reader(), Consumer()
    watch = IncarnationWatch(reader)  # type: ignore[arg-type]
    listener = FromStartAfterBrokerRestart(watch, "g")
    listener.subscriber = type("Subscriber", (), {"consumer": consumer})()
    return reader, watch, listener, consumer


async def test_the_first_incarnation_read_is_the_baseline_and_the_same_one_again_changes_nothing():
    reader, watch, _, consumer = watched()
    assert not await watch.check() and not await watch.check()
    assert watch.epoch == 0 and consumer.seeks == {} and consumer.commits == []


async def test_a_new_incarnation_seeks_every_assigned_partition_to_the_start_and_commits_it():
    reader, watch, listener, consumer = watched()
    await watch.check()
    reader.value = "b"
    assert await watch.check()
    assert consumer.seeks == {T0: 0, T1: 0} and consumer.commits == [{T0: 0, T1: 0}]
    assert listener.epoch == watch.epoch == 1


async def test_a_change_seen_while_rebalancing_is_caught_up_at_the_next_assignment_only():
    reader, watch, listener, consumer = watched()
    await watch.check()
    consumer.assigned = set()  # rebalancing: nothing to seek yet
    reader.value = "b"
    await watch.check()
    assert listener.epoch == 0 and consumer.seeks == {}
    await listener.on_partitions_assigned({T1})  # its committed offset may be the old broker's
    assert consumer.seeks == {T1: 0} and listener.epoch == 1
    consumer.seeks.clear()
    await listener.on_partitions_assigned({T0, T1})  # a later rebalance on the same broker: committed offsets hold
    assert consumer.seeks == {}


async def test_every_marker_read_is_handed_to_the_service_once_it_took_it_without_waiting_for_its_consumer():
    """A consumer busy with a long batch, or one that had not read the first marker before the
    broker died, left the outbox unreplayed (the supervision test's flake): the watch hands the
    service each marker it reads; one the service could not take (database away) is handed again."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    reader, handed, failing = Reader(), [], [False]

    async def on_marker(incarnation: uuid.UUID, drained: bool) -> None:
        if failing[0]:
            raise ConnectionError("database away")
        handed.append((str(incarnation), drained))

    watch = IncarnationWatch(reader, on_marker=on_marker)  # type: ignore[arg-type]
    reader.value = first
    await watch.check()
    await watch.check()
    assert handed == [(first, False)]
    reader.value, reader.previous_drained, failing[0] = second, True, True
    try:
        await watch.check()
    except ConnectionError:
        pass
    failing[0] = False
    await watch.check()
    assert handed == [(first, False), (second, True)] and watch.epoch == 1


async def test_no_marker_on_the_broker_hands_nothing():
    reader, handed = Reader(), []
    reader.value = ""

    async def on_marker(incarnation: uuid.UUID, drained: bool) -> None:
        handed.append(incarnation)

    watch = IncarnationWatch(reader, on_marker=on_marker)  # type: ignore[arg-type]
    await watch.check()
    assert handed == []
