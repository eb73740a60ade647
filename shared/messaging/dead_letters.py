"""Dead letters are kept for a bounded time and forget with the person they name (issue 15
parts 3 and H1, SPEC §9).

A dead letter keeps the raw event it could not apply: names, emails, phones. Its table is
the record the operator replays from (`rekisteri dlq`), so it is kept long enough to fix and
replay (`DEAD_LETTER_RETENTION_DAYS`, default 7, the source topics' own retention) and then
deleted, replayed or not. Every service runs the prune as a background job; replicas may run
it at once (a DELETE twice is the same DELETE).

The copy relayed to `<topic>-dlq` is sealed under the dead letter's own data key (subject
`seal_subject`, a fresh UUID); deleting the row destroys that key in the same transaction
(trigger in `shared/sql/0006_dead_letter_sealing.sql`), so every copy on the topic stops
opening. The row's `naming` holds keyed digests of what the original names
(`shared.privacy.naming`): erasure deletes a person's dead letters by them.
"""
from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import timedelta
from typing import Any, Sequence

import asyncpg

from shared.logging import get_logger
from shared.privacy.crypto import open_sealed, seal, sealed_key_id
from shared.privacy.keystore import KeyStore

log = get_logger(__name__)
PRUNE_INTERVAL_S = 3600.0
SUBJECT_HEADER = "x-dead-letter-subject"


async def sealed_relay(keys: KeyStore, subject: uuid.UUID, original: bytes, conn: asyncpg.Connection) -> bytes:
    """The `-dlq` message body: `{"dead_letter": subject, "original": sealed}`, the original
    bytes (base64) sealed under the subject's key, made if need be in the caller's transaction."""
    key = await keys.get_or_create_data_key(subject, conn)
    sealed = seal(key, base64.b64encode(original).decode())
    return json.dumps({"dead_letter": str(subject), "original": sealed}, separators=(",", ":")).encode()


async def open_relay(keys: KeyStore, body: bytes) -> bytes:
    """The original bytes of a `-dlq` message; `KeyDestroyed` once its dead letter is deleted."""
    document = json.loads(body)
    subject = uuid.UUID(document["dead_letter"])
    sealed = document["original"]
    return base64.b64decode(open_sealed(await keys.data_key(subject, sealed_key_id(sealed)), sealed))


async def erase_naming(conn: asyncpg.Connection, tokens: Sequence[str]) -> int:
    """Delete the dead letters naming any of `tokens` (keyed digests: `NamingDigests.tokens`,
    `naming.stored_tokens`); their keys go with them (the trigger). How many went."""
    if not tokens:
        return 0
    status = await conn.execute("DELETE FROM dead_letters WHERE naming && $1::text[]", list(tokens))
    return int(status.split()[-1])


async def prune_dead_letters(pool: asyncpg.Pool | asyncpg.Connection, retention_days: int) -> int:
    """Delete the dead letters stored (or last dead-lettered again) longer ago than the retention."""
    status = await pool.execute("DELETE FROM dead_letters WHERE received_at < now() - $1::interval",
                                timedelta(days=retention_days))
    return int(status.split()[-1])


async def prune_dead_letters_job(runtime: Any, interval_s: float = PRUNE_INTERVAL_S) -> None:
    """At start-up and then every `interval_s`, for as long as the service runs (`runtime`: a
    started `shared.runtime.ServiceRuntime`, not imported: the runtime imports this module)."""
    while not runtime.stopping.is_set():
        removed = await prune_dead_letters(runtime.pool, runtime.settings.dead_letter_retention_days)
        if removed:
            log.info("dead_letters_pruned", count=removed, retention_days=runtime.settings.dead_letter_retention_days)
        try:
            await asyncio.wait_for(runtime.stopping.wait(), timeout=interval_s)
        except TimeoutError:
            pass
