"""What tests need to drive the register from outside, as other systems would.

Tests synchronise by waiting on conditions, never on fixed sleeps. Every wait's timeout is
multiplied by `REKISTERI_TEST_TIMEOUT_SCALE` (default 1): on a slow or busy machine set it
to 2 or 3 and every `eventually`, `read_topic` and `until_consumed` waits that much longer.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from shared.web.auth import Role, mint_token
from shared.messaging.envelope import Envelope
from shared.messaging.events import Payload
from shared.messaging.outbox import build_envelope
from shared.settings import DEV_TOKEN_SECRET

TEST_TOKEN_SECRET = DEV_TOKEN_SECRET
TIMEOUT_SCALE = float(os.environ.get("REKISTERI_TEST_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    """A test's timeout on this machine (see the module's docstring)."""
    return seconds * TIMEOUT_SCALE


def token(role: Role | str, user: str = "tester", person_id: uuid.UUID | str | None = None, **claims: Any) -> str:
    """A token for every service; a subject token as if the person had just logged in."""
    if Role(role) is Role.subject:
        claims.setdefault("auth_time", int(time.time()))
    return mint_token(TEST_TOKEN_SECRET, user=user, role=role, person_id=person_id, **claims)


def auth(role: Role | str, user: str = "tester", person_id: uuid.UUID | str | None = None,
         **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, user, person_id, **claims)}"}


async def open_account(contacts: Any, person_id: Any, username: str, password: str, headers: dict[str, str],
                       **fields: Any) -> Any:
    """Staff open an account and the person activates it with the code (SPEC §7): the
    activation's response; the staff call's response is `.opened`."""
    opened = await contacts.post(f"/persons/{person_id}/account", headers=headers,
                                 json={"username": username, **fields})
    if opened.status_code != 201:
        return opened
    activated = await contacts.post("/auth/activate", json={
        "username": username, "code": opened.json()["activation_code"], "new_password": password})
    activated.opened = opened
    return activated


async def marketing_export(contacts: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of `GET /marketing/export`, following `next` (issue 20)."""
    persons: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await contacts.get("/marketing/export", params=query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        persons += body["persons"]
        cursor = body["next"]
        if cursor is None:
            return persons


async def eventually(check: Callable[[], Awaitable[Any] | Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value.

    `timeout` is scaled by `REKISTERI_TEST_TIMEOUT_SCALE`."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f} s; last value: {last!r}")


def envelope_for(payload: Payload, *, source: str = "test-system", event_id: uuid.UUID | None = None,
                 correlation_id: str | None = None) -> tuple[str, str, Envelope]:
    return build_envelope(payload, source=source, event_id=event_id, correlation_id=correlation_id)


class ExternalSystem:
    """A producer standing in for the company's other systems."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
        self.sent: list[RecordMetadata] = []  # where each message went: `until_consumed` waits past them

    async def send_many(self, topic: str, values: Iterable[bytes], key: bytes | None) -> None:
        """Many messages at once (batched by the producer), each acknowledged."""
        futures = [await self.producer.send(topic, value, key=key) for value in values]
        await self.producer.flush()
        self.sent += [await future for future in futures]

    async def until_consumed(self, group: str, topic: str | None = None, timeout: float = 60.0) -> None:
        """Wait until `group` has committed past everything this system sent (on `topic`)."""
        await until_consumed(self.bootstrap, group, [m for m in self.sent if topic in (None, m.topic)],
                             timeout=timeout)

    async def __aenter__(self) -> ExternalSystem:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, payload: Payload, *, source: str = "test-system", event_id: uuid.UUID | None = None
                      ) -> Envelope:
        topic, key, envelope = envelope_for(payload, source=source, event_id=event_id)
        self.sent.append(await self.producer.send_and_wait(topic, envelope.to_bytes(), key=key.encode()))
        return envelope

    async def publish_envelope(self, topic: str, envelope: Envelope, key: str | None = None) -> None:
        self.sent.append(await self.producer.send_and_wait(topic, envelope.to_bytes(),
                                                           key=(key or envelope.subject).encode()))

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None = b"raw") -> None:
        self.sent.append(await self.producer.send_and_wait(topic, value, key=key))


async def until_consumed(bootstrap: str, group: str, sent: Iterable[RecordMetadata], timeout: float = 60.0) -> None:
    """Wait until consumer group `group` has committed an offset past each of `sent`.

    A service commits offsets after its database commit and in fetch order, so once this
    holds everything sent has been applied, or found a duplicate, or dead-lettered: a test can
    then assert that nothing more happens, without sleeping "long enough"."""
    last: dict[TopicPartition, int] = {}
    for meta in sent:
        tp = TopicPartition(meta.topic, meta.partition)
        last[tp] = max(last.get(tp, -1), meta.offset)
    if not last:
        return
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        async def passed() -> dict[str, int] | bool:
            behind = {f"{tp.topic}[{tp.partition}]": offset for tp, offset in last.items()
                      if ((await reader.committed(tp)) or -1) <= offset}
            return not behind
        await eventually(passed, timeout=timeout, interval=0.1)
    finally:
        await reader.stop()


# The test session's database (set by the `database_url` fixture): where `read_topic` finds the
# data keys that open the sealed fields of personal topics (issue 15).
KEYSTORE_DATABASE_URL: str | None = None


class _Opener:
    """Opens the sealed fields of a record's envelope with the session's key store, as the
    register's consumers do; a record it cannot open (another stack's, not an envelope, an
    erased person's) is left as it came. The bytes as they travelled stay in `raw`."""

    def __init__(self, topic: str, database_url: str | None = None) -> None:
        from shared.messaging.topics import CATALOGUE

        self.database_url = database_url or KEYSTORE_DATABASE_URL
        self.spec = CATALOGUE.get(topic)
        self.dead_letters = topic.endswith("-dlq")  # sealed under each dead letter's own key (H1)
        self.pool = None
        self.keys = None

    async def __aenter__(self) -> _Opener:
        sealed = self.dead_letters or (self.spec is not None and self.spec.sealed_fields)
        if sealed and self.database_url:
            import asyncpg

            from shared.privacy.config import master_keys
            from shared.privacy.keystore import PostgresKeyStore

            self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
            self.keys = PostgresKeyStore(self.pool, master_keys(os.environ["REKISTERI_MASTER_KEY"]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def open(self, value: bytes | None) -> bytes | None:
        if self.keys is None or not value or b'"rk1.' not in value:
            return value
        if self.dead_letters:
            from shared.messaging.dead_letters import open_relay

            try:
                return await open_relay(self.keys, value)
            except Exception:  # noqa: BLE001 - left as it came (its dead letter is gone, say)
                return value
        from shared.privacy.sealing import open_fields, subject_of

        try:
            envelope = json.loads(value)
            data = envelope["data"]
            subject = subject_of(data, self.spec.seal_subject, uuid.UUID(envelope["id"]))
            envelope["data"] = await open_fields(self.keys, data, self.spec.sealed_fields, subject)
        except Exception:  # noqa: BLE001 - left as it came
            return value
        return json.dumps(envelope).encode()


async def read_topic(bootstrap: str, topic: str, *, until: Callable[[list[dict[str, Any]]], bool],
                     timeout: float = 60.0, keystore_database_url: str | None = None) -> list[dict[str, Any]]:
    """Read a topic from the beginning (no group) until `until(records)` holds. Sealed fields
    of personal topics and sealed dead letters are opened (`value`) with the key store of
    `keystore_database_url` (the session's by default); `raw` is what travelled."""
    async with _Opener(topic, keystore_database_url) as opener:
        return await _read_topic(bootstrap, topic, until, timeout, opener)


async def _read_topic(bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                      timeout: float, opener: _Opener) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # topic may be brand new
            partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[dict[str, Any]] = []
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for msg in msgs:
                    records.append({
                        "key": msg.key, "value": await opener.open(msg.value), "raw": msg.value,
                        "partition": msg.partition, "offset": msg.offset,
                        "headers": {k: v.decode() for k, v in (msg.headers or [])},
                    })
            if until(records):
                return records
        raise AssertionError(f"{topic}: condition not met within {timeout:.0f} s ({len(records)} records read)")
    finally:
        await consumer.stop()


def envelopes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        try:
            out.append(json.loads(r["value"]))
        except (ValueError, TypeError):
            continue
    return out


async def spans_applied(retention: Any, person_id: uuid.UUID, *, ended: int, open_: int = 0) -> bool:
    """Retention holds every relationship and assignment published for the person: `ended` spans
    with both start and end, `open_` started and not ended. Starts and ends come on topics of
    their own, in no order between them, so until then retention's plan can be an interim one
    (say, the relationship ended and no assignment heard of yet)."""
    found = await retention.runtime.pool.fetchrow(
        "SELECT count(*) FILTER (WHERE ended_at IS NOT NULL) AS ended, count(*) FILTER (WHERE ended_at IS NULL) AS open"
        " FROM (SELECT started_at, ended_at FROM relationships WHERE person_id = $1"
        "       UNION ALL SELECT started_at, ended_at FROM assignments WHERE person_id = $1) spans"
        " WHERE started_at IS NOT NULL", person_id)
    return (found["ended"], found["open"]) == (ended, open_)


async def scheduler_passes_until(retention: Any, done: Callable[[], Awaitable[bool]], at: Any = None,
                                 attempts: int = 50) -> bool:
    """Retention scheduler passes until `done()`. A pass claims due timers with SKIP LOCKED, so
    it skips a person whose row a consumer holds at that moment; the real scheduler takes that
    person on its next tick, and a test repeats the pass instead. False if never done."""
    for _ in range(attempts):
        await retention.runtime.scheduler.run_due(at)
        if await done():
            return True
        await asyncio.sleep(0.1)
    return False
