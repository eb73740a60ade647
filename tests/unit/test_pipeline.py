"""The bulk-topic pipeline's ordering rules (SPEC §8: a crash loses nothing), with the
transactions and the Kafka consumer stood in for: only the coordination is under test here;
tests/integration/test_billing.py runs it on the real broker and database."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

from aiokafka import TopicPartition

from shared.messaging.pipeline import BatchPipeline, next_offsets

TP = TopicPartition("usage-recorded", 0)


@dataclass
class FakeKafka:
    commits: list[int] = field(default_factory=list)
    seeks: list[int] = field(default_factory=list)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(getattr(offsets[TP], "offset", offsets[TP]))

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.commits[-1] if self.commits else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks.append(0)


class Message:
    """A fetched batch of offsets [first, first + count) on one partition."""

    def __init__(self, kafka: FakeKafka, first: int, count: int = 10) -> None:
        self.consumer = kafka
        self.first = first
        self.raw_message = [SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=o)
                            for o in range(first, first + count)]

    async def nack(self) -> None:
        self.consumer.seek(TP, self.first)


class Transactions:
    """`apply_prepared` whose batches finish when the test says, or fail."""

    spec = SimpleNamespace(name="usage-recorded")

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Future[None]] = {}
        self.running = 0
        self.most_at_once = 0

    def gate(self, batch: str) -> asyncio.Future[None]:
        return self.gates.setdefault(batch, asyncio.get_running_loop().create_future())

    async def apply_prepared(self, prepared: str) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate(prepared)
        finally:
            self.running -= 1


def new_pipeline() -> tuple[FakeKafka, Transactions, BatchPipeline]:
    transactions = Transactions()
    return FakeKafka(), transactions, BatchPipeline(transactions, depth=2)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_next_offsets_are_one_past_the_last_record_of_each_partition():
    records = [SimpleNamespace(topic="t", partition=p, offset=o) for p, o in ((0, 5), (1, 9), (0, 7), (1, 2))]
    assert next_offsets(records) == {TopicPartition("t", 0): 8, TopicPartition("t", 1): 10}


async def test_a_batch_that_commits_first_waits_for_the_earlier_batch_before_its_offsets():
    kafka, transactions, pipeline = new_pipeline()
    await pipeline.submit("b0", Message(kafka, 0))  # type: ignore[arg-type]
    await pipeline.submit("b10", Message(kafka, 10))  # type: ignore[arg-type]
    await settle()
    assert transactions.most_at_once == 2
    transactions.gate("b10").set_result(None)  # the later batch's transaction commits first
    await settle()
    assert kafka.commits == []  # committing offset 20 now would skip 0..9 if we crashed
    transactions.gate("b0").set_result(None)
    await pipeline.drain()
    assert kafka.commits == [10, 20]


async def test_no_more_than_depth_transactions_at_once():
    kafka, transactions, pipeline = new_pipeline()
    await pipeline.submit("b0", Message(kafka, 0))  # type: ignore[arg-type]
    await pipeline.submit("b10", Message(kafka, 10))  # type: ignore[arg-type]
    third = asyncio.create_task(pipeline.submit("b20", Message(kafka, 20)))  # type: ignore[arg-type]
    await settle()
    assert not third.done() and transactions.running == 2
    transactions.gate("b0").set_result(None)
    await third
    for batch in ("b10", "b20"):
        transactions.gate(batch).set_result(None)
    await pipeline.drain()
    assert kafka.commits == [10, 20, 30]


async def test_after_a_failed_batch_nothing_later_commits_and_the_next_batch_rewinds_to_the_committed_offset():
    kafka, transactions, pipeline = new_pipeline()
    await pipeline.submit("b0", Message(kafka, 0))  # type: ignore[arg-type]
    transactions.gate("b0").set_result(None)
    await pipeline.drain()
    await pipeline.submit("b10", Message(kafka, 10))  # type: ignore[arg-type]
    await pipeline.submit("b20", Message(kafka, 20))  # type: ignore[arg-type]
    transactions.gate("b20").set_result(None)  # applied, but after a batch that is about to fail
    transactions.gate("b10").set_exception(RuntimeError("database gone"))
    await pipeline.drain()
    assert kafka.commits == [10]
    assert kafka.seeks == [10]  # the failed batch asks to be fetched again at once
    await pipeline.submit("b30", Message(kafka, 30))  # type: ignore[arg-type] - fetched before the rewind
    assert kafka.seeks == [10, 10]  # rewound to the committed offset...
    assert "b30" not in transactions.gates  # ...and the batch fetched before it dropped, not applied
    await pipeline.submit("again", Message(kafka, 10, count=30))  # type: ignore[arg-type] - read again
    transactions.gate("again").set_result(None)
    await pipeline.drain()
    assert kafka.commits == [10, 40]


async def test_a_closing_pipeline_commits_no_more_offsets_but_finishes_its_transactions():
    """At shutdown a commit on the stopped consumer would never return; the batch is read again."""
    kafka, transactions, pipeline = new_pipeline()
    await pipeline.submit("b0", Message(kafka, 0))  # type: ignore[arg-type]
    pipeline.close()
    transactions.gate("b0").set_result(None)
    await pipeline.drain()
    assert transactions.running == 0 and kafka.commits == []


async def test_a_batch_handed_over_before_the_broker_restarted_commits_nothing_and_a_later_one_commits():
    """Issue 20, SPEC §8: offsets of a batch fetched from the old broker are positions in a log
    that is gone; committed on the new broker they would make its log's start skipped."""
    kafka, transactions, pipeline = new_pipeline()
    epoch = {"now": 0}
    pipeline.epoch = lambda: epoch["now"]
    await pipeline.submit("old", Message(kafka, 100), 0)  # type: ignore[arg-type]
    epoch["now"] = 1  # the watch saw a new incarnation while the batch's transaction ran
    transactions.gate("old").set_result(None)
    await pipeline.drain()
    assert kafka.commits == []
    await pipeline.submit("new", Message(kafka, 0), 1)  # type: ignore[arg-type]
    transactions.gate("new").set_result(None)
    await pipeline.drain()
    assert kafka.commits == [10]
