"""The `-dlq` copy of a dead letter is sealed under the dead letter's own data key, and the key
goes with the row (issue 15, H1, SPEC §9), on the real broker and database: the topic holds no
plaintext of the original, the copy opens while the row is kept, and once the prune (or any
DELETE) removes the row its key is destroyed, so the record on the topic no longer opens."""
from __future__ import annotations

import uuid

import pytest

from shared.messaging.parsing import Incoming
from shared.messaging.dead_letters import SUBJECT_HEADER, open_relay, prune_dead_letters
from shared.privacy.crypto import KeyDestroyed
from tests.helpers import read_topic
from tests.integration.test_cli_operations import picky

__all__ = ["picky"]


async def _dead_letter_with_an_email(runtime) -> tuple[bytes, str, dict]:
    email = f"sealed-{uuid.uuid4().hex[:8]}@example.fi"
    raw = f'{{"broken": "{email}", "phone": "040 765 4321"'.encode()
    await runtime.consumers["contact-upserted"].dead_letter(Incoming(raw, email.encode()), f"test: bad {email}")
    row = await runtime.pool.fetchrow("SELECT id, seal_subject, reason, key FROM dead_letters WHERE original = $1", raw)
    records = await read_topic(runtime.settings.kafka_bootstrap_servers, "contact-upserted-dlq", until=lambda rs: any(
        r["headers"].get(SUBJECT_HEADER) == str(row["seal_subject"]) for r in rs))
    [record] = [r for r in records if r["headers"].get(SUBJECT_HEADER) == str(row["seal_subject"])]
    return raw, email, {"row": row, "record": record}


async def test_the_dlq_copy_holds_no_plaintext_and_opens_while_its_dead_letter_is_kept(picky):
    raw, email, found = await _dead_letter_with_an_email(picky)
    record, row = found["record"], found["row"]
    travelled = b"\n".join([record["raw"], record["key"] or b"", *(v.encode() for v in record["headers"].values())])
    assert email.encode() not in travelled and b"7654321" not in travelled
    assert record["key"] == str(row["seal_subject"]).encode()  # not the original key (here an email)
    assert email not in row["reason"] and "[email]" in row["reason"]  # the reason header is scrubbed too
    assert record["value"] == raw  # the test's reader opened it with the key store, as a consumer could
    assert await open_relay(picky.keys, record["raw"]) == raw


async def test_pruning_a_dead_letter_destroys_its_key_so_the_dlq_copy_no_longer_opens(picky):
    raw, _email, found = await _dead_letter_with_an_email(picky)
    row, record = found["row"], found["record"]
    await picky.pool.execute("UPDATE dead_letters SET received_at = now() - interval '8 days' WHERE id = $1", row["id"])
    assert await prune_dead_letters(picky.pool, 7) >= 1
    assert await picky.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", row["seal_subject"]) == 0
    assert await picky.pool.fetchval("SELECT true FROM keystore.destroyed_key WHERE person_id = $1", row["seal_subject"])
    assert await picky.pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(row["seal_subject"])) == 0
    picky.keys.ttl_s = 0  # no cached key: ask the store, as another process would
    with pytest.raises(KeyDestroyed):
        await open_relay(picky.keys, record["raw"])


async def test_any_deletion_of_a_dead_letter_destroys_its_key(picky):
    _raw, _email, found = await _dead_letter_with_an_email(picky)
    subject = found["row"]["seal_subject"]
    assert await picky.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", subject) == 1
    await picky.pool.execute("DELETE FROM dead_letters WHERE id = $1", found["row"]["id"])  # an operator's psql
    assert await picky.pool.fetchval("SELECT count(*) FROM keystore.data_key WHERE person_id = $1", subject) == 0
