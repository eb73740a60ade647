"""Dead letters are bounded and replayed with care (issue 15 part 3, issue 20), on the real
broker and database: the `dead_letters` table is pruned after DEAD_LETTER_RETENTION_DAYS by
every service's background job; `rekisteri dlq replay` refuses an erased person's entries
(R7, SPEC §9) and marks an entry replayed only once the broker acknowledged it (SPEC §8)."""
from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from shared.messaging.parsing import Incoming
from shared.messaging.dead_letters import prune_dead_letters
from shared.messaging.events import ContactRegistered, DataSource
from shared.messaging.outbox import build_envelope
from shared.ops import operations as ops
from shared.privacy.ledger import record_erasures
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from tests.conftest import service_test_settings
from tests.helpers import eventually
from tests.integration.test_cli_operations import cli_env, picky, rekisteri

__all__ = ["cli_env", "picky"]


async def _store_dead_letter(runtime: ServiceRuntime, body: bytes, key: bytes | None, reason: str) -> int:
    consumer = runtime.consumers["contact-upserted"]
    await consumer.dead_letter(Incoming(body, key), reason)
    return await runtime.pool.fetchval("SELECT id FROM dead_letters WHERE original = $1", body)


def _registered(person_id: uuid.UUID) -> bytes:
    """An envelope naming the person (the bytes a consumer of contact-registered dead-lettered)."""
    payload = ContactRegistered(person_id=person_id, source=DataSource.staff, lifecycle_state="active",
                                emails=[f"erased-{uuid.uuid4().hex[:6]}@example.fi"])
    return build_envelope(payload, source="contacts")[2].to_bytes()


async def test_prune_deletes_dead_letters_past_the_retention_and_keeps_younger_ones(picky):
    """Issue 15: a dead letter with personal data is kept DEAD_LETTER_RETENTION_DAYS, replayed or not."""
    old_open = await _store_dead_letter(picky, b'{"old": "open"}', None, "test: old")
    old_replayed = await _store_dead_letter(picky, b'{"old": "replayed"}', None, "test: old")
    young = await _store_dead_letter(picky, b'{"young": true}', None, "test: young")
    await picky.pool.execute("UPDATE dead_letters SET received_at = now() - interval '8 days' WHERE id = ANY($1)",
                             [old_open, old_replayed])
    await picky.pool.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = $1", old_replayed)
    await picky.pool.execute("UPDATE dead_letters SET received_at = now() - interval '6 days' WHERE id = $1", young)

    assert await prune_dead_letters(picky.pool, 7) == 2
    left = {r["id"] for r in await picky.pool.fetch("SELECT id FROM dead_letters WHERE id = ANY($1)",
                                                    [old_open, old_replayed, young])}
    assert left == {young}


async def test_every_service_prunes_its_dead_letters_from_start_up(infra, database_url, tmp_path):
    """Issue 15: the prune is a platform job of every ServiceRuntime (no service wires it)."""
    schema = f"dlprune_{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(service_name=schema, dead_letter_retention_days=3,
                               **service_test_settings(infra, database_url))
    first = ServiceRuntime(schema, settings, None)
    await first.start()
    await first.pool.execute("INSERT INTO dead_letters (topic, consumer, reason, original, digest, received_at)"
                             " VALUES ('t', 'c', 'r', 'old', 'd1', now() - interval '4 days'),"
                             " ('t', 'c', 'r', 'young', 'd2', now() - interval '2 days')")
    await first.stop()
    again = ServiceRuntime(schema, settings, None)
    await again.start()
    try:
        await eventually(lambda: again.pool.fetchval("SELECT count(*) = 1 FROM dead_letters"))
        assert await again.pool.fetchval("SELECT convert_from(original, 'UTF8') FROM dead_letters") == "young"
    finally:
        await again.stop()


async def test_replay_refuses_an_erased_persons_dead_letter_and_sends_nothing(cli_env, picky, capsys):
    """R7, SPEC §9: the erasure ledger says the person is gone; their data must not go back on
    the bus. Fails on the old code, which replayed it."""
    person_id = uuid.uuid4()
    by_key = await _store_dead_letter(picky, b"not even json " + uuid.uuid4().bytes.hex().encode(),
                                      str(person_id).encode(), "test: bad bytes")
    by_body = await _store_dead_letter(picky, _registered(person_id), b"other-key", "test: bad event")
    async with picky.pool.acquire() as conn:
        await record_erasures(conn, [person_id])

    code, out, err = await rekisteri(capsys, "dlq", "replay", f"{picky.name}:{by_key}", f"{picky.name}:{by_body}")
    assert code == 2
    for letter in (by_key, by_body):
        assert f"refused {picky.name}:{letter}: names a person erased on" in err
        assert f"replayed {picky.name}:{letter} to " not in out  # ` to `: not a prefix of entry 10's id
    rows = await picky.pool.fetch("SELECT replayed_at, replay_requested_at FROM dead_letters WHERE id = ANY($1)",
                                  [by_key, by_body])
    assert [tuple(r) for r in rows] == [(None, None), (None, None)]

    code, out, err = await rekisteri(capsys, "dlq", "replay", "--all", "--service", picky.name)
    assert code == 0 and f"refused {picky.name}:{by_key}:" in err and f"replayed {picky.name}:{by_key} to " not in out


class _WatchingProducer:
    """The real producer, and what the row said while the send was not yet acknowledged."""

    def __init__(self, inner: AIOKafkaProducer, pool, schema: str) -> None:
        self.inner, self.pool, self.schema, self.seen = inner, pool, schema, []

    async def send_and_wait(self, topic, value, *, key=None, headers=None):
        dead_letter = int(dict(headers or [])[ops.REPLAY_HEADER].decode().rpartition(":")[2])
        self.seen.append(await self.pool.fetchval(
            f'SELECT replayed_at FROM "{self.schema}".dead_letters WHERE id = $1', dead_letter))
        return await self.inner.send_and_wait(topic, value, key=key, headers=headers)


async def test_replay_marks_the_entry_replayed_only_after_the_broker_acknowledged(infra, picky):
    """Issue 20: a row marked before the ack says replayed for a message the broker may never
    have had (a killed command, a memory-only broker). Fails on the old code, which marked first."""
    letter = await _store_dead_letter(picky, b'{"replay": "' + uuid.uuid4().hex.encode() + b'"}', b"k", "test: bad")
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    try:
        watching = _WatchingProducer(producer, picky.pool, picky.name)
        async with picky.pool.acquire() as conn:
            outcome = await ops.replay_dead_letters(conn, watching, refs=[f"{picky.name}:{letter}"])  # type: ignore[arg-type]
    finally:
        await producer.stop()
    assert watching.seen == [None]  # not marked while unacknowledged
    assert [d.id for d in outcome.replayed + outcome.failed_again] == [letter]
    row = await picky.pool.fetchrow("SELECT replayed_at, replay_requested_at FROM dead_letters WHERE id = $1", letter)
    assert row["replay_requested_at"] is None
    assert (row["replayed_at"] is not None) == bool(outcome.replayed)


async def test_a_replay_the_broker_never_acknowledged_leaves_the_entry_open(picky):
    """Issue 20: a send that fails leaves nothing marked, so `dlq list` still shows it open."""
    letter = await _store_dead_letter(picky, b'{"unsent": "' + uuid.uuid4().hex.encode() + b'"}', b"k", "test: bad")

    class Refusing:
        async def send_and_wait(self, *args, **kwargs):
            raise ConnectionError("broker away")

    async with picky.pool.acquire() as conn:
        try:
            await ops.replay_dead_letters(conn, Refusing(), refs=[f"{picky.name}:{letter}"])  # type: ignore[arg-type]
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failed send was not reported")
    row = await picky.pool.fetchrow("SELECT replayed_at, replay_requested_at FROM dead_letters WHERE id = $1", letter)
    assert tuple(row) == (None, None)
