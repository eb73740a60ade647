"""Consumer lag as an operator reads it (`rekisteri lag`, the `rekisteri_consumer_lag` metric):
never negative, and labelled approximate on the embedded broker (SPEC §8, issue 20).

The broker here is this test's own, run by the launcher's `Stack`, so restarting it disturbs
no other test.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from shared.messaging.lag import consumer_lag
from shared.ops.cli import main
from shared.ops.launcher import Stack
from shared.ops.stack import free_port
from shared.settings import PlatformSettings

pytestmark = pytest.mark.broker_restart
TOPIC = "invoice-issued"  # consumed by no service of the register: only this test's group reads it


@pytest.fixture
async def own_stack(infra, tmp_path):
    settings = PlatformSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                                database_url=infra.database_url("unused"))
    stack = Stack(settings, root=tmp_path / "stack", services=())
    await stack.start_broker()
    yield stack
    stack.broker.stop()


async def produce(bootstrap: str, count: int) -> int:
    """`count` records on one partition, one batch each; the partition they went to."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(count):
            sent = await producer.send_and_wait(TOPIC, b"{}", key=b"lag-test")
        return sent.partition
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, partition: int, offset: int) -> None:
    """Commit `offset` for `group` as its consumer would after applying what came before it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, partition)
        consumer.assign([tp])  # a manual assignment: no group join needed to commit
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


async def test_lag_after_a_broker_restart_is_clamped_at_zero_and_labelled_approximate(own_stack, monkeypatch, capsys):
    """A consumer that read 5 events before the embedded broker restarted commits offset 5 on
    the new, empty log (its acknowledgement lands after the restart); with 2 new events the
    end offset is 2. The lag is 0, not 5 - 2 = -3, and it says it is approximate."""
    bootstrap = own_stack.settings.kafka_bootstrap_servers
    group = f"lag-{uuid.uuid4().hex[:8]}"
    partition = await produce(bootstrap, 5)
    await commit(bootstrap, group, partition, 5)
    [before] = await consumer_lag(bootstrap, [group])
    assert before.lag == 0  # caught up

    own_stack.broker.kill()
    await own_stack.start_broker()
    assert await produce(bootstrap, 2) == partition
    await commit(bootstrap, group, partition, 5)  # the late acknowledgement from before the restart

    [after] = await consumer_lag(bootstrap, [group])
    assert (after.topic, after.partitions, after.lag) == (TOPIC, 1, 0)
    assert before.approximate and after.approximate  # the launcher marked this broker as the embedded one

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["lag", "--group", group]) == 0
    out = capsys.readouterr().out
    fields = next(line for line in out.splitlines() if line.startswith(group)).split()
    assert fields[1:] == [TOPIC, "1", "0"]
    assert "approximate on the embedded broker" in out


async def test_lag_counts_what_is_past_the_committed_offset(own_stack):
    """The clamp hides nothing real: 3 events past the committed offset are a lag of 3."""
    bootstrap = own_stack.settings.kafka_bootstrap_servers
    group = f"lag-{uuid.uuid4().hex[:8]}"
    partition = await produce(bootstrap, 4)
    await commit(bootstrap, group, partition, 1)
    [entry] = await consumer_lag(bootstrap, [group])
    assert entry.lag == 3
