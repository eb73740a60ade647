"""Marketing bans and the suppression list of keyed contact-point digests (R8, R13, SPEC §9)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


from shared.privacy import ContactPointDigests, StoredDigest, SuppressionChains, SuppressionKeyring
from shared.privacy.rekey import DigestArray, DigestTable, SuppressionLists

from services.contacts.storage.common import Conn


# ---- marketing bans (R8, R13) -----------------------------------------------------------

async def add_bans(conn: Conn, person_id: uuid.UUID, purposes: list[str]) -> None:
    await conn.execute("INSERT INTO marketing_bans (person_id, purpose) SELECT $1, p FROM unnest($2::text[]) AS p"
                       " ON CONFLICT DO NOTHING", person_id, purposes)


async def bans_of(conn: Conn, person_id: uuid.UUID) -> list[str]:
    return [r["purpose"] for r in await conn.fetch(
        "SELECT purpose FROM marketing_bans WHERE person_id = $1 ORDER BY purpose", person_id)]


# ---- the suppression list: keyed digests of banned contact points (R8, SPEC §9) --------

# What `rekisteri suppression rekey` re-keys here (SPEC §9); every other column is copied.
SUPPRESSION_LISTS = SuppressionLists(
    "contacts", (DigestTable("suppressed_contact_points", ("kind", "purpose", "recorded_at")),),
    (DigestArray("access_requests", "id", "contact_digests"),))
_suppression: SuppressionChains | None = None
_staged_redigested = False


def use_suppression_keys(keyring: SuppressionKeyring, ttl_s: float = 1.0) -> None:
    """Set once at start-up (app.build_app): the keys this process digests contact points with."""
    global _suppression, _staged_redigested
    if _suppression is None or _suppression.keyring.current_chain != keyring.current_chain:
        _suppression, _staged_redigested = SuppressionChains(keyring, ttl_s), False


async def _digests(conn: Conn) -> ContactPointDigests:
    if _suppression is None:
        raise RuntimeError("contacts: suppression keys not configured (storage.use_suppression_keys)")
    digests = await _suppression.digests(conn)
    if not _staged_redigested:
        await _redigest_staged(conn, digests)
    return digests


async def _redigest_staged(conn: Conn, digests: ContactPointDigests) -> None:
    """Finish migration 0003: digest under the key what it staged in plain from the unkeyed
    list, and give digests back to access requests. In the caller's transaction; marked done
    only once a pass finds nothing left (a rolled-back pass is simply done again)."""
    global _staged_redigested
    staged = await conn.fetch("DELETE FROM suppression_redigest RETURNING value, kind, purpose, recorded_at")
    for r in staged:
        points = digests.points([r["value"]] if r["kind"] == "email" else [], [r["value"]] if r["kind"] == "phone" else [])
        await _insert_suppressed(conn, points, [r["purpose"]], r["recorded_at"])
    requests = await conn.fetch("SELECT id, emails, phones FROM access_requests"
                                " WHERE contact_digests = '{}' AND (emails <> '{}' OR phones <> '{}')")
    for r in requests:
        await conn.execute("UPDATE access_requests SET contact_digests = $2 WHERE id = $1", r["id"],
                           digests.tokens(r["emails"], r["phones"]))
    if not staged and not requests:
        _staged_redigested = True


async def _insert_suppressed(conn: Conn, points: list[StoredDigest], purposes: list[str],
                             recorded_at: datetime | None = None) -> None:
    if not points:
        return
    await conn.execute(
        "INSERT INTO suppressed_contact_points (digest, key_id, kind, purpose, recorded_at)"
        " SELECT d, c, k, p, coalesce($5, now()) FROM unnest($1::bytea[], $2::text[], $3::text[]) AS t(d, c, k)"
        " CROSS JOIN unnest($4::text[]) AS p ON CONFLICT DO NOTHING",
        [x.digest for x in points], [x.chain for x in points], [x.kind for x in points], purposes, recorded_at)


async def add_suppressed(conn: Conn, emails: list[str], phones: list[str], purposes: list[str]) -> None:
    """Keep these (normalised or raw) contact points suppressed for the purposes, as keyed digests."""
    await _insert_suppressed(conn, (await _digests(conn)).points(emails, phones), purposes)


async def suppressed_purposes(conn: Conn, emails: list[str], phones: list[str]) -> list[str]:
    """The purposes any of these contact points is suppressed for (looked up under every live chain)."""
    digests = [p.digest for p in (await _digests(conn)).points(emails, phones)]
    if not digests:
        return []
    return [r["purpose"] for r in await conn.fetch(
        "SELECT DISTINCT purpose FROM suppressed_contact_points WHERE digest = ANY($1::bytea[]) ORDER BY purpose",
        digests)]


async def contact_digests(conn: Conn, emails: list[str], phones: list[str]) -> list[str]:
    """An access request's contact points as keyed digests, to count a person's requests (R12)."""
    return (await _digests(conn)).tokens(emails, phones)


async def marketing_candidates(conn: Conn, *, after: uuid.UUID | None = None, limit: int = 500
                               ) -> list[dict[str, Any]]:
    """One page of persons in a marketable state, by id (keyset: `after` the last id seen)."""
    rows = await conn.fetch(
        "SELECT p.id, p.first_name, p.last_name, p.title, p.emails, p.phones, p.organisation_id, p.purposes,"
        " p.lifecycle_state, o.name AS organisation_name,"
        " coalesce(array_agg(b.purpose) FILTER (WHERE b.purpose IS NOT NULL), '{}') AS bans"
        " FROM persons p LEFT JOIN organisations o ON o.id = p.organisation_id"
        " LEFT JOIN marketing_bans b ON b.person_id = p.id"
        " WHERE p.lifecycle_state IN ('prospect', 'active', 'marketing') AND ($1::uuid IS NULL OR p.id > $1)"
        " GROUP BY p.id, o.name ORDER BY p.id LIMIT $2", after, limit)
    return [dict(r) for r in rows]
