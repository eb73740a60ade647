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
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, TextIO

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from shared.messaging.parsing import describe_validation_error
from shared.messaging.envelope import Envelope
from shared.messaging.outbox import build_envelope, message_key
from shared.privacy import ledger
from shared.privacy.naming import named_in
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


@dataclass(frozen=True)
class Refused:
    """A dead letter `dlq replay` did not send, and why (no value of the message in it)."""
    letter: DeadLetter
    reason: str


@dataclass(frozen=True)
class ReplayOutcome:
    replayed: list[DeadLetter]  # acknowledged by the broker and marked replayed
    failed_again: list[DeadLetter]  # acknowledged, but a consumer dead-lettered it again at once: left open
    refused: list[Refused]


def persons_named(key: bytes | None, original: bytes) -> set[uuid.UUID]:
    """The ids a dead letter names, wherever they are in its key or bytes (a dead letter may be
    any bytes): the extraction its keyed `naming` digests were made from (issue 15, H1)."""
    return named_in(original, key).ids


async def erased_persons(conn: asyncpg.Connection, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """Which of these persons the register erased, and when: the erasure ledger, and the key
    store's tombstones (a destroyed data key is an erasure too)."""
    ids = list(set(person_ids))
    found: dict[uuid.UUID, datetime] = {}
    if not ids:
        return found
    if await ledger.exists(conn):
        found |= await ledger.erased_among(conn, ids)
    if await conn.fetchval("SELECT to_regclass('keystore.destroyed_key') IS NOT NULL"):
        rows = await conn.fetch("SELECT person_id, destroyed_at FROM keystore.destroyed_key"
                                " WHERE person_id = ANY($1::uuid[])", ids)
        for r in rows:
            found.setdefault(r["person_id"], r["destroyed_at"])
    return found


async def _select_for_replay(conn: asyncpg.Connection, refs: list[str] | None,
                             service: str | None) -> list[tuple[str, asyncpg.Record]]:
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
    return selected


def _letter(schema: str, row: asyncpg.Record, replayed_at: datetime | None) -> DeadLetter:
    return DeadLetter(schema, row["id"], row["topic"], row["consumer"], row["reason"], row["event_id"],
                      row["partition"], row["offset"], row["received_at"], replayed_at)


async def replay_dead_letters(conn: asyncpg.Connection, producer: AIOKafkaProducer, *, refs: list[str] | None = None,
                              service: str | None = None, progress: Callable[[int], Progress] | None = None
                              ) -> ReplayOutcome:
    """Republish the original bytes to the original topic; mark each row replayed once the
    broker acknowledged it (issue 20).

    With `refs`, exactly those (replayed or not: an operator may replay twice); without,
    every dead letter not yet replayed. One that names an erased person is refused, never
    sent (R7, SPEC §9: the erasure ledger or the key store's tombstones say so). Before
    sending, the row records that a replay was asked for; a consumer that fails on the
    replayed message again reopens it with its new reason (`dead_letter`), and the mark
    after the acknowledgement then finds it reopened and leaves it open. A replay that
    is never acknowledged (the broker away, the command killed) leaves the row open.
    Consumers that applied the message already ignore it (their inbox has its id).
    """
    selected = await _select_for_replay(conn, refs, service)
    named = {(schema, row["id"]): persons_named(row["key"], bytes(row["original"])) for schema, row in selected}
    erased = await erased_persons(conn, (p for persons in named.values() for p in persons))
    bar = progress(len(selected)) if progress else None
    outcome = ReplayOutcome([], [], [])
    for schema, row in selected:
        gone = sorted(erased[p] for p in named[(schema, row["id"])] if p in erased)
        if gone:
            outcome.refused.append(Refused(_letter(schema, row, row["replayed_at"]),
                                           f"names a person erased on {gone[0]:%Y-%m-%d} (R7, SPEC §9): not replayed,"
                                           f" the dead-letter prune deletes it"))
        else:
            await _replay_one(conn, producer, schema, row, outcome)
        if bar:
            bar.advance()
    return outcome


async def _replay_one(conn: asyncpg.Connection, producer: AIOKafkaProducer, schema: str, row: asyncpg.Record,
                      outcome: ReplayOutcome) -> None:
    table = f'"{schema}".dead_letters'
    requested = await conn.fetchval(
        f"UPDATE {table} SET replay_requested_at = clock_timestamp() WHERE id = $1 RETURNING replay_requested_at",
        row["id"])
    try:
        await producer.send_and_wait(row["topic"], bytes(row["original"]),
                                     key=bytes(row["key"]) if row["key"] is not None else None,
                                     headers=[(REPLAY_HEADER, f"{schema}:{row['id']}".encode())])
    except BaseException:
        await conn.execute(f"UPDATE {table} SET replay_requested_at = NULL WHERE id = $1 AND replay_requested_at = $2",
                           row["id"], requested)
        raise
    # Acknowledged: marked replayed unless a consumer already reopened it (the request cleared).
    replayed_at = await conn.fetchval(
        f"UPDATE {table} SET replayed_at = now(), replay_requested_at = NULL"
        " WHERE id = $1 AND replay_requested_at = $2 RETURNING replayed_at", row["id"], requested)
    if replayed_at is None:
        outcome.failed_again.append(_letter(schema, row, None))
    else:
        outcome.replayed.append(_letter(schema, row, replayed_at))


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
        rows = await conn.fetch(f'SELECT seq, topic, failed_reason, created_at FROM "{schema}".outbox'
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
        status = await conn.execute(f'UPDATE "{schema}".outbox SET failed_reason = NULL'
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
