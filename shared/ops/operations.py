"""What the operator CLI does (issue 8): dead letters, outbox backlog, publishing by hand.

PostgreSQL is the record (SPEC §8): dead letters are read from each service schema's
`dead_letters` table, not from the `-dlq` topics, and a replay is marked there. Every
register schema is found by its platform tables, so `--service` names a schema.
Output never carries message bodies: they may hold personal data.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, TextIO

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from shared.messaging.consumer import describe_validation_error
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import build_envelope, message_key
from shared.settings import PlatformSettings
from shared.messaging.topics import CATALOGUE

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
REPLAY_HEADER = "x-replayed-dead-letter"


class OperationError(Exception):
    """A mistake of the operator's (unknown service, bad id, invalid event); exit code 2."""


# -- progress ---------------------------------------------------------------------------
class Progress:
    """`label done/total` on stderr: rewritten in place on a terminal, every 10 % otherwise."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self._tty = self.stream.isatty()
        self._next_report = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._tty:
            self.stream.write(f"\r{self.label} {self.done}/{self.total}")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif self.done >= self._next_report or self.done >= self.total:
            self.stream.write(f"{self.label} {self.done}/{self.total}\n")
            self._next_report = self.done + max(1, self.total // 10)


# -- schemas ------------------------------------------------------------------------------
async def register_schemas(conn: asyncpg.Connection, service: str | None = None) -> list[str]:
    """Schemas holding the platform tables (one per service), or just `service`'s."""
    rows = await conn.fetch(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'dead_letters'"
        " AND table_schema IN (SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox')"
        " ORDER BY table_schema"
    )
    schemas = [r["table_schema"] for r in rows if _SCHEMA_NAME.match(r["table_schema"])]
    if service is None:
        return schemas
    if service not in schemas:
        raise OperationError(f"service {service!r} has no schema with platform tables in this database")
    return [service]


# -- dead letters ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetter:
    service: str
    id: int
    topic: str
    consumer: str
    reason: str
    event_id: str | None
    partition: int | None
    offset: int | None
    received_at: datetime
    replayed_at: datetime | None

    @property
    def ref(self) -> str:
        """How the operator names it: ids are per service schema."""
        return f"{self.service}:{self.id}"


async def list_dead_letters(conn: asyncpg.Connection, service: str | None = None, *,
                            include_replayed: bool = False) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    for schema in await register_schemas(conn, service):
        rows = await conn.fetch(
            f'SELECT id, topic, consumer, reason, event_id, partition, "offset", received_at, replayed_at'
            f' FROM "{schema}".dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id',
            include_replayed,
        )
        found += [DeadLetter(schema, r["id"], r["topic"], r["consumer"], r["reason"], r["event_id"],
                             r["partition"], r["offset"], r["received_at"], r["replayed_at"]) for r in rows]
    return found


def parse_refs(refs: Iterable[str], service: str | None) -> dict[str, list[int]]:
    """`consent:12` or `12` (with --service) → {schema: [ids]} (dead-letter ids, outbox seqs)."""
    wanted: dict[str, list[int]] = {}
    for ref in refs:
        schema, _, raw_id = ref.rpartition(":")
        schema = schema or (service or "")
        if not schema:
            raise OperationError(f"dead letter id {ref!r} needs a service: write SERVICE:ID or pass --service")
        if service and schema != service:
            raise OperationError(f"dead letter id {ref!r} is not in --service {service}")
        if not raw_id.isdigit():
            raise OperationError(f"dead letter id {ref!r} is not SERVICE:NUMBER")
        wanted.setdefault(schema, []).append(int(raw_id))
    return wanted


async def replay_dead_letters(conn: asyncpg.Connection, producer: AIOKafkaProducer, *, refs: list[str] | None = None,
                              service: str | None = None, progress: Callable[[int], Progress] | None = None
                              ) -> list[DeadLetter]:
    """Republish the original bytes to the original topic, then mark each row replayed.

    With `refs`, exactly those (replayed or not: an operator may replay twice); without,
    every dead letter not yet replayed. A message that fails again is dead-lettered
    again by its consumer (the row's `replayed_at` is cleared, the new reason kept);
    consumers that applied it already ignore it (their inbox has its id).
    """
    if refs:
        wanted = parse_refs(refs, service)
        known = set(await register_schemas(conn))
        for schema in wanted:
            if schema not in known:
                raise OperationError(f"service {schema!r} has no schema with platform tables in this database")
    else:
        wanted = {schema: [] for schema in await register_schemas(conn, service)}
    selected: list[tuple[str, asyncpg.Record]] = []
    for schema, ids in wanted.items():
        rows = await conn.fetch(
            f'SELECT id, topic, consumer, reason, event_id, partition, "offset", received_at, replayed_at, original, key'
            f' FROM "{schema}".dead_letters'
            f' WHERE CASE WHEN $1::bigint[] IS NULL THEN replayed_at IS NULL ELSE id = ANY($1::bigint[]) END ORDER BY id',
            ids or None,
        )
        missing = sorted(set(ids) - {r["id"] for r in rows})
        if missing:
            raise OperationError(f"no dead letter {', '.join(f'{schema}:{i}' for i in missing)}")
        selected += [(schema, r) for r in rows]
    bar = progress(len(selected)) if progress else None
    replayed: list[DeadLetter] = []
    for schema, row in selected:
        # Marked before sending: a consumer that fails again at once must find the row
        # replayed, or its re-dead-lettering (which reopens replayed rows only) is lost.
        replayed_at = await conn.fetchval(
            f'UPDATE "{schema}".dead_letters SET replayed_at = now() WHERE id = $1 RETURNING replayed_at', row["id"])
        try:
            await producer.send_and_wait(row["topic"], bytes(row["original"]),
                                         key=bytes(row["key"]) if row["key"] is not None else None,
                                         headers=[(REPLAY_HEADER, f"{schema}:{row['id']}".encode())])
        except BaseException:
            await conn.execute(f'UPDATE "{schema}".dead_letters SET replayed_at = $2 WHERE id = $1',
                               row["id"], row["replayed_at"])
            raise
        replayed.append(DeadLetter(schema, row["id"], row["topic"], row["consumer"], row["reason"], row["event_id"],
                                   row["partition"], row["offset"], row["received_at"], replayed_at))
        if bar:
            bar.advance()
    return replayed


# -- outbox ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backlog:
    service: str
    unpublished: int
    oldest_age_s: float | None  # of the oldest unpublished row
    open_dead_letters: int


async def outbox_backlog(conn: asyncpg.Connection, service: str | None = None) -> list[Backlog]:
    backlog = []
    for schema in await register_schemas(conn, service):
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age"
            f' FROM "{schema}".outbox WHERE published_at IS NULL AND failed_reason IS NULL'
        )
        dead = await conn.fetchval(f'SELECT count(*) FROM "{schema}".dead_letters WHERE replayed_at IS NULL')
        age = float(row["age"]) if row["age"] is not None else None
        backlog.append(Backlog(schema, row["n"], age, dead))
    return backlog


@dataclass(frozen=True)
class SetAside:
    service: str
    seq: int
    topic: str
    reason: str
    created_at: datetime


async def set_aside_rows(conn: asyncpg.Connection, service: str | None = None) -> list[SetAside]:
    """Outbox rows the relay set aside (never published, never pruned while set aside)."""
    found = []
    for schema in await register_schemas(conn, service):
        rows = await conn.fetch(f'SELECT seq, topic, failed_reason, created_at FROM "{schema}".outbox'  # noqa: S608
                                " WHERE published_at IS NULL AND failed_reason IS NOT NULL ORDER BY seq")
        found += [SetAside(schema, r["seq"], r["topic"], r["failed_reason"], r["created_at"]) for r in rows]
    return found


async def republish_set_aside(conn: asyncpg.Connection, refs: list[str], service: str | None = None) -> int:
    """Hand set-aside rows (`service:seq`) back to the relay, after the cause was fixed; a row
    that still cannot be published is set aside again with its reason."""
    wanted = parse_refs(refs, service)
    known = set(await register_schemas(conn))
    count = 0
    for schema, seqs in wanted.items():
        if schema not in known:
            raise OperationError(f"service {schema!r} has no schema with platform tables in this database")
        status = await conn.execute(f'UPDATE "{schema}".outbox SET failed_reason = NULL'  # noqa: S608
                                    " WHERE seq = ANY($1::bigint[]) AND published_at IS NULL AND failed_reason IS NOT NULL",
                                    seqs)
        changed = int(status.split()[-1])
        if changed < len(set(seqs)):
            raise OperationError(f"{schema}: only {changed} of {len(set(seqs))} rows were set aside")
        await conn.execute(f"SELECT pg_notify('outbox_{schema}', '')")
        count += changed
    return count


# -- publishing by hand ----------------------------------------------------------------------
def build_publication(topic_name: str, document: Any, *, source: str) -> tuple[str, Envelope]:
    """(key, envelope) for a topic from a payload (`data`) or a full envelope.

    A full envelope is recognised by its `type` and `data` fields; it keeps its id, so a
    second publication of the same file is a no-op for consumers. Errors name fields and
    rules, never values.
    """
    spec = CATALOGUE.get(topic_name)
    if spec is None:
        raise OperationError(f"topic {topic_name!r} is not in the catalogue (see `rekisteri topics describe`)")
    if not isinstance(document, dict):
        raise OperationError("each event must be a JSON object (the payload, or a full envelope)")
    if "type" in document and "data" in document:
        try:
            envelope = Envelope.model_validate(document)
        except ValidationError as exc:
            raise OperationError(f"invalid envelope: {describe_validation_error(exc)}") from None
        if envelope.type != spec.name:
            raise OperationError(f"invalid envelope: type does not match topic {spec.name}")
        if envelope.schema_version != spec.schema_version:
            raise OperationError(f"invalid envelope: schema_version must be {spec.schema_version} on {spec.name}")
        data = envelope.data
    else:
        envelope, data = None, document
    try:
        payload = spec.payload.model_validate(data)
    except ValidationError as exc:
        raise OperationError(f"invalid data for {spec.name}: {describe_validation_error(exc)}") from None
    if envelope is None:
        _topic, key, envelope = build_envelope(payload, source=source)
        return key, envelope
    key = message_key(spec, json.loads(payload.model_dump_json()), envelope.id)
    if envelope.subject != key:
        raise OperationError(f"invalid envelope: subject must equal data.{spec.key} on {spec.name}")
    return key, envelope


def load_documents(text: str) -> list[Any]:
    """One JSON object, a JSON array of them, or JSON lines."""
    stripped = text.strip()
    if not stripped:
        raise OperationError("no JSON given")
    try:
        loaded = json.loads(stripped)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in stripped.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise OperationError(f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return loaded if isinstance(loaded, list) else [loaded]


def producer_for(settings: PlatformSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                            enable_idempotence=settings.kafka_enable_idempotence, linger_ms=5,
                            client_id="rekisteri-cli", **settings.kafka_client_options())


def build_publications(topic_name: str, documents: list[Any], *, source: str) -> list[tuple[str, Envelope]]:
    """Validate every event before any is sent (all or nothing)."""
    built = []
    for index, document in enumerate(documents):
        try:
            built.append(build_publication(topic_name, document, source=source))
        except OperationError as exc:
            raise OperationError(f"event {index}: {exc}" if len(documents) > 1 else str(exc)) from None
    return built


async def publish_envelopes(producer: AIOKafkaProducer, topic_name: str, built: list[tuple[str, Envelope]], *,
                            progress: Callable[[int], Progress] | None = None) -> list[Envelope]:
    """Produce in order, each acknowledged by the broker (acks=all) before the next."""
    bar = progress(len(built)) if progress else None
    for key, envelope in built:
        await producer.send_and_wait(topic_name, envelope.to_bytes(), key=key.encode(),
                                     headers=[("content-type", b"application/json")])
        if bar:
            bar.advance()
    return [envelope for _, envelope in built]
