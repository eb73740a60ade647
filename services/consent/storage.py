"""SQL of the consent service (asyncpg, parameters always bound). Contact points appear
here only as keyed hashes (`digest`), never as values (R8)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import asyncpg

from shared.privacy.digests import StoredDigest
from shared.privacy.rekey import DigestTable, SuppressionLists

# What `rekisteri suppression rekey` re-keys here (SPEC §9); every other column is copied.
SUPPRESSION_LISTS = SuppressionLists("consent", (
    DigestTable("contact_point", ("person_id", "kind")),
    DigestTable("suppression_record", ("purpose", "channel", "kind", "source", "recorded_at")),
))


@dataclass(frozen=True)
class Evidence:
    """Who recorded a permission or ban, how, from where, under which notice text (R13)."""

    source: str
    method: str
    actor: str
    notice_version: str | None = None
    # A self-service change: the client's network, minimised (`shared.privacy.client_network`).
    client_network: str | None = None


@dataclass(frozen=True)
class Change:
    person_id: uuid.UUID
    purpose: str
    channel: str
    previous: str | None


_BAN = """
WITH target AS (
    SELECT DISTINCT p, pu, ch FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(p, pu, ch)
    WHERE NOT EXISTS (SELECT 1 FROM erased_person e WHERE e.person_id = t.p)
), sup AS (
    INSERT INTO suppression_record (digest, key_id, purpose, channel, kind, source)
    SELECT cp.digest, cp.key_id, t.pu, t.ch, cp.kind, $4 FROM target t JOIN contact_point cp ON cp.person_id = t.p
    ON CONFLICT DO NOTHING
), prev AS (
    SELECT t.p, t.pu, t.ch, s.status FROM target t
    LEFT JOIN consent_state s ON s.person_id = t.p AND s.purpose = t.pu AND s.channel = t.ch
), up AS (
    INSERT INTO consent_state (person_id, purpose, channel, status, source, method, actor, notice_version)
    SELECT p, pu, ch, 'banned', $4, $5, $6, $7 FROM target
    ON CONFLICT (person_id, purpose, channel) DO UPDATE
        SET status = 'banned', source = EXCLUDED.source, method = EXCLUDED.method, actor = EXCLUDED.actor,
            notice_version = EXCLUDED.notice_version, recorded_at = now()
        WHERE consent_state.status <> 'banned'
    RETURNING person_id, purpose, channel
), hist AS (
    INSERT INTO consent_history (person_id, purpose, channel, change, source, method, actor, notice_version,
                                 client_network)
    SELECT person_id, purpose, channel, 'banned', $4, $5, $6, $7, $8 FROM up
)
SELECT up.person_id, up.purpose, up.channel, prev.status AS previous
FROM up JOIN prev ON prev.p = up.person_id AND prev.pu = up.purpose AND prev.ch = up.channel
"""


async def record_bans(conn: asyncpg.Connection, triples: Sequence[tuple[uuid.UUID, str, str]],
                      evidence: Evidence) -> list[Change]:
    """Ban each (person, purpose, channel) and suppress the persons' known contact points for it
    (R8), in one statement (the ban's latency); returns the bans that are new. Erased persons
    are skipped (R7)."""
    if not triples:
        return []
    persons, purposes, channels = zip(*triples)
    rows = await conn.fetch(_BAN, list(persons), list(purposes), list(channels), evidence.source,
                            evidence.method, evidence.actor, evidence.notice_version, evidence.client_network)
    return [Change(r["person_id"], r["purpose"], r["channel"], r["previous"]) for r in rows]


async def suppress_points_of(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID], source: str) -> None:
    """Keep, on the suppression list, every known contact point of every ban of these persons (R8)."""
    await conn.execute(
        "INSERT INTO suppression_record (digest, key_id, purpose, channel, kind, source)"
        " SELECT cp.digest, cp.key_id, s.purpose, s.channel, cp.kind, $2 FROM contact_point cp"
        " JOIN consent_state s ON s.person_id = cp.person_id AND s.status = 'banned'"
        " WHERE cp.person_id = ANY($1::uuid[])"
        " ON CONFLICT DO NOTHING",
        list(person_ids), source,
    )


async def suppress_digests(conn: asyncpg.Connection, points: Sequence[StoredDigest],
                           purposes: Sequence[str], channels: Sequence[str], source: str) -> None:
    if not points:
        return
    await conn.execute(
        "INSERT INTO suppression_record (digest, key_id, purpose, channel, kind, source)"
        " SELECT d.digest, d.key_id, pu, ch, d.kind, $6"
        " FROM unnest($1::bytea[], $2::text[], $3::text[]) AS d(digest, key_id, kind),"
        " unnest($4::text[]) pu, unnest($5::text[]) ch"
        " ON CONFLICT DO NOTHING",
        [p.digest for p in points], [p.chain for p in points], [p.kind for p in points], list(purposes),
        list(channels), source,
    )


async def persons_with(conn: asyncpg.Connection, digests: Sequence[bytes]) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT DISTINCT person_id FROM contact_point WHERE digest = ANY($1::bytea[])",
                            list(digests))
    return [r["person_id"] for r in rows]


async def link_contact_points(conn: asyncpg.Connection, person_id: uuid.UUID,
                              points: Sequence[StoredDigest]) -> None:
    """Remember which hashed contact points belong to the person (additive: an old address
    stays linked, so its ban is still honoured)."""
    if not points:
        return
    await conn.execute(
        "INSERT INTO contact_point (digest, key_id, person_id, kind)"
        " SELECT d, c, $1, k FROM unnest($2::bytea[], $3::text[], $4::text[]) AS t(d, c, k) ON CONFLICT DO NOTHING",
        person_id, [p.digest for p in points], [p.chain for p in points], [p.kind for p in points],
    )


async def suppressed_pairs_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[tuple[str, str]]:
    """(purpose, channel) pairs suppressed for any contact point of the person."""
    rows = await conn.fetch(
        "SELECT DISTINCT r.purpose, r.channel FROM contact_point cp"
        " JOIN suppression_record r ON r.digest = cp.digest WHERE cp.person_id = $1",
        person_id,
    )
    return [(r["purpose"], r["channel"]) for r in rows]


async def status_of(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str) -> str | None:
    return await conn.fetchval(
        "SELECT status FROM consent_state WHERE person_id = $1 AND purpose = $2 AND channel = $3 FOR UPDATE",
        person_id, purpose, channel,
    )


async def record_grant(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str,
                       evidence: Evidence, *, lifts_ban: bool) -> None:
    await conn.execute(
        "INSERT INTO consent_state (person_id, purpose, channel, status, source, method, actor, notice_version)"
        " VALUES ($1, $2, $3, 'granted', $4, $5, $6, $7)"
        " ON CONFLICT (person_id, purpose, channel) DO UPDATE SET status = 'granted', source = EXCLUDED.source,"
        " method = EXCLUDED.method, actor = EXCLUDED.actor, notice_version = EXCLUDED.notice_version,"
        " recorded_at = now()",
        person_id, purpose, channel, evidence.source, evidence.method, evidence.actor, evidence.notice_version,
    )
    await _history(conn, person_id, purpose, channel, "ban_lifted" if lifts_ban else "granted", evidence)
    if lifts_ban:
        # The person's own addresses leave the suppression list for this purpose and channel,
        # unless another person holding the same address still bans it.
        await conn.execute(
            "DELETE FROM suppression_record r USING contact_point cp"
            " WHERE cp.person_id = $1 AND r.digest = cp.digest AND r.purpose = $2 AND r.channel = $3"
            " AND NOT EXISTS (SELECT 1 FROM contact_point o JOIN consent_state s ON s.person_id = o.person_id"
            "   AND s.purpose = $2 AND s.channel = $3 AND s.status = 'banned'"
            "   WHERE o.digest = cp.digest AND o.person_id <> $1)",
            person_id, purpose, channel,
        )


async def record_withdrawal(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str,
                            evidence: Evidence) -> bool:
    """Withdraw a permission (back to unknown); False when there was none."""
    status = await conn.execute(
        "DELETE FROM consent_state WHERE person_id = $1 AND purpose = $2 AND channel = $3 AND status = 'granted'",
        person_id, purpose, channel,
    )
    if status.endswith(" 0"):
        return False
    await _history(conn, person_id, purpose, channel, "withdrawn", evidence)
    return True


async def _history(conn: asyncpg.Connection, person_id: uuid.UUID, purpose: str, channel: str, change: str,
                   evidence: Evidence) -> None:
    await conn.execute(
        "INSERT INTO consent_history (person_id, purpose, channel, change, source, method, actor, notice_version,"
        " client_network) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        person_id, purpose, channel, change, evidence.source, evidence.method, evidence.actor,
        evidence.notice_version, evidence.client_network,
    )


async def states_of(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT purpose, channel, status, source, method, actor, notice_version, recorded_at"
        " FROM consent_state WHERE person_id = $1 ORDER BY purpose, channel", person_id)
    return [dict(r) for r in rows]


async def history_of(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID, limit: int | None = None,
                     after: int = 0) -> list[dict[str, Any]]:
    """A person's changes, oldest first, keyset paged by the record id (`after` the last one
    shown); every one without a `limit` (an access report is whole, Art. 15)."""
    rows = await conn.fetch(
        "SELECT id, purpose, channel, change, source, method, actor, notice_version, client_network, recorded_at"
        " FROM consent_history WHERE person_id = $1 AND id > $2 ORDER BY id LIMIT $3", person_id, after, limit)
    return [dict(r) for r in rows]


async def suppressions_of(conn: asyncpg.Connection, digests: Sequence[bytes]) -> list[dict[str, Any]]:
    """The suppression records of one contact point, given its digest under each live chain."""
    rows = await conn.fetch("SELECT DISTINCT ON (purpose, channel) purpose, channel, source, recorded_at"
                            " FROM suppression_record WHERE digest = ANY($1::bytea[])"
                            " ORDER BY purpose, channel, recorded_at", list(digests))
    return [dict(r) for r in rows]


async def is_erased(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_person WHERE person_id = $1", person_id))


async def stored_digests_of(conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID]) -> list[tuple[str, bytes]]:
    """The keyed digests (chain, digest) consent keeps of the persons' contact points: what
    finds their dead letters at erasure (issue 15), read before `erase_person` drops them."""
    rows = await conn.fetch("SELECT key_id, digest FROM contact_point WHERE person_id = ANY($1::uuid[])", list(person_ids))
    return [(r["key_id"], bytes(r["digest"])) for r in rows]


async def erase_person(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """Everything about the person goes except the suppression list, which holds no id (R7, R8)."""
    await conn.execute("SET LOCAL consent.erasing = 'on'")
    await conn.execute("DELETE FROM consent_history WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM consent_state WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM contact_point WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM marketing_register WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM passive_person WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM subject_token_floor WHERE person_id = $1", person_id)
    await conn.execute("INSERT INTO erased_person (person_id) VALUES ($1) ON CONFLICT DO NOTHING", person_id)


async def raise_token_floor(conn: asyncpg.Connection, person_id: uuid.UUID, min_version: int,
                            disabled: bool) -> None:
    """Revocations only tighten: a late, older announcement never revives a token."""
    await conn.execute(
        "INSERT INTO subject_token_floor (person_id, min_version, disabled) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id) DO UPDATE SET min_version = GREATEST(subject_token_floor.min_version,"
        " EXCLUDED.min_version), disabled = subject_token_floor.disabled OR EXCLUDED.disabled, updated_at = now()",
        person_id, min_version, disabled)


async def subject_token_revoked(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID,
                                token_version: int | None) -> bool:
    """Has contacts revoked this subject token (or has the person been erased)? An operator-minted
    token carries no version: only erasure and a disabled account end it before it expires."""
    row = await conn.fetchrow(
        "SELECT (SELECT true FROM erased_person WHERE person_id = $1) AS erased, f.min_version, f.disabled"
        " FROM (SELECT 1) one LEFT JOIN subject_token_floor f ON f.person_id = $1", person_id)
    if row["erased"] or row["disabled"]:
        return True
    return token_version is not None and row["min_version"] is not None and token_version < row["min_version"]


async def add_to_marketing_register(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO marketing_register (person_id) VALUES ($1) ON CONFLICT DO NOTHING", person_id)


async def marketing_register_page(pool: asyncpg.Pool, after: uuid.UUID | None, limit: int) -> list[dict[str, Any]]:
    """Persons in the marketing register with their current permissions and bans, keyset paged by person id."""
    rows = await pool.fetch(
        "SELECT m.person_id, m.transferred_at,"
        " coalesce(json_agg(json_build_object('purpose', s.purpose, 'channel', s.channel, 'status', s.status)"
        "   ORDER BY s.purpose, s.channel) FILTER (WHERE s.person_id IS NOT NULL), '[]') AS consents"
        " FROM marketing_register m LEFT JOIN consent_state s ON s.person_id = m.person_id"
        " WHERE $1::uuid IS NULL OR m.person_id > $1"
        " GROUP BY m.person_id, m.transferred_at ORDER BY m.person_id LIMIT $2",
        after, limit,
    )
    return [dict(r) for r in rows]


# ---- checks: a few set-based queries whatever the size of the list -------------------

LARGE_LIST = 1000


async def check_digests(conn: asyncpg.Connection | asyncpg.Pool, digests: list[bytes], purpose: str,
                        channel: str, per_point: int = 1) -> list[tuple[int, str]]:
    """(1-based position, hit) for positions that are suppressed or whose person has a state.
    Each position has `per_point` consecutive digests (one per live key chain)."""
    if not digests:
        return []
    rows = await _fetch_for_list(
        conn,
        "SELECT t.ord, 'suppressed' AS hit FROM {list}"
        " JOIN suppression_record r ON r.digest = t.v AND r.purpose = $1 AND r.channel = $2"
        " UNION ALL"
        " SELECT t.ord, s.status FROM {list} JOIN contact_point cp ON cp.digest = t.v"
        " JOIN consent_state s ON s.person_id = cp.person_id AND s.purpose = $1 AND s.channel = $2",
        "bytea", digests, [k // per_point + 1 for k in range(len(digests))], purpose, channel,
    )
    return [(r[0], r[1]) for r in rows]


async def check_persons(conn: asyncpg.Connection | asyncpg.Pool, person_ids: list[uuid.UUID], purpose: str,
                        channel: str) -> list[tuple[int, str]]:
    """(1-based position, hit) for erased persons, persons with a state, suppressed persons."""
    if not person_ids:
        return []
    rows = await _fetch_for_list(
        conn,
        "SELECT t.ord, 'erased' AS hit FROM {list} JOIN erased_person e ON e.person_id = t.v"
        " UNION ALL"
        " SELECT t.ord, s.status FROM {list}"
        " JOIN consent_state s ON s.person_id = t.v AND s.purpose = $1 AND s.channel = $2"
        " UNION ALL"
        " SELECT DISTINCT t.ord, 'suppressed' FROM {list} JOIN contact_point cp ON cp.person_id = t.v"
        " JOIN suppression_record r ON r.digest = cp.digest AND r.purpose = $1 AND r.channel = $2",
        "uuid", person_ids, list(range(1, len(person_ids) + 1)), purpose, channel,
    )
    return [(r[0], r[1]) for r in rows]


async def _fetch_for_list(conn: asyncpg.Connection | asyncpg.Pool, sql: str, kind: str, values: Sequence[Any],
                          ords: list[int], *args: Any) -> list[asyncpg.Record]:
    """`sql` with `{list}` standing for the list as a relation `t(v, ord)`.

    A short list (a single check) is an `unnest` in one plain round trip. A campaign list of
    up to 100,000 entries goes into a temporary table with statistics: the planner has none
    for an `unnest` and assumes its values repeat, so it would hash the whole suppression list
    (1,000,000 bans) rather than the campaign list; knowing the list, it hashes the list or
    probes the index, as the sizes say. The table is emptied before (in a caller's open
    transaction an earlier list is still in it) and at commit. Kept in memory (no temp files)
    and in this process (starting parallel workers costs more than the join on a busy host)."""
    if len(values) <= LARGE_LIST:
        n = len(args)
        relation = f"unnest(${n + 1}::{kind}[], ${n + 2}::bigint[]) AS t(v, ord)"
        return await conn.fetch(sql.format(list=relation), *args, values, ords)
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await _fetch_for_list(c, sql, kind, values, ords, *args)
    table = f"check_list_{kind}"
    async with conn.transaction():
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL max_parallel_workers_per_gather = 0;"
                           f" CREATE TEMP TABLE IF NOT EXISTS {table} (v {kind} NOT NULL, ord bigint NOT NULL)"
                           f" ON COMMIT DELETE ROWS; TRUNCATE {table}")
        await conn.copy_records_to_table(table, records=zip(values, ords), columns=("v", "ord"))
        await conn.execute(f"ANALYZE {table}")
        return await conn.fetch(sql.format(list=f"{table} AS t"), *args)


async def set_passive(conn: asyncpg.Connection, person_id: uuid.UUID, passive: bool) -> None:
    """Follow contacts' lifecycle: passivated persons are the register owner's only (R6)."""
    if passive:
        await conn.execute("INSERT INTO passive_person (person_id) VALUES ($1) ON CONFLICT DO NOTHING", person_id)
    else:
        await conn.execute("DELETE FROM passive_person WHERE person_id = $1", person_id)


async def is_passive(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM passive_person WHERE person_id = $1", person_id))


async def in_marketing_register_since(conn: asyncpg.Connection, person_id: uuid.UUID) -> Any:
    """When the person moved to the marketing register, or None."""
    return await conn.fetchval("SELECT transferred_at FROM marketing_register WHERE person_id = $1", person_id)


async def suppression_digests(conn: asyncpg.Connection, chains: Any) -> Any:
    """Digests of contact points under every key chain in use in this schema (`chains` is the
    service's `shared.privacy.SuppressionChains`; it caches what it reads here)."""
    return await chains.digests(conn)
async def passive_among(conn: asyncpg.Connection | asyncpg.Pool, person_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT person_id FROM passive_person WHERE person_id = ANY($1::uuid[])", person_ids)
    return {r["person_id"] for r in rows}
