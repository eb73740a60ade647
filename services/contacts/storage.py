"""SQL of the contacts service (asyncpg, parameters always bound). Every function takes the
caller's connection, so a change, its audit row and its outbox event share one transaction."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from shared.privacy import ContactPointDigests, StoredDigest, SuppressionChains, SuppressionKeyring
from shared.privacy.rekey import DigestArray, DigestTable, SuppressionLists
from services.contacts.domain import MARKETING_FIELDS, PERSON_FIELDS, SECTION_PURPOSES, State

Conn = asyncpg.Connection

PERSON_COLUMNS = ("id, first_name, last_name, title, expertise, emails, phones, other_contact, organisation_id,"
                  " legal_basis, purposes, lifecycle_state, external_ref, state_changed_at, created_at, updated_at")


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


# ---- organisations ----------------------------------------------------------------------

async def insert_organisation(conn: Conn, org: dict[str, Any], source: str) -> uuid.UUID:
    org_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO organisations (id, name, business_id, address, phone, source) VALUES ($1, $2, $3, $4, $5, $6)",
        org_id, org["name"], org.get("business_id"), org.get("address"), org.get("phone"), source,
    )
    return org_id


async def get_organisation(conn: Conn, org_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(
        "SELECT id, name, business_id, address, phone, source, created_at FROM organisations WHERE id = $1", org_id))


async def organisation_by_business_id(conn: Conn, business_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(
        "SELECT id, name, business_id, address, phone, source, created_at FROM organisations WHERE business_id = $1",
        business_id))


async def ensure_organisation(conn: Conn, business_id: str, name: str | None, source: str) -> uuid.UUID:
    """The organisation with this y-tunnus, created from an import when it is new."""
    row = await conn.fetchrow(
        "INSERT INTO organisations (id, name, business_id, source) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (business_id) DO UPDATE SET updated_at = organisations.updated_at RETURNING id",
        uuid.uuid4(), name or business_id, business_id, source,
    )
    return row["id"]


# ---- persons ----------------------------------------------------------------------------

async def insert_person(conn: Conn, person_id: uuid.UUID, fields: dict[str, Any], *, source: str,
                        legal_basis: str, purposes: list[str], state: State, external_ref: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO persons (id, first_name, last_name, title, expertise, emails, phones, other_contact,"
        " organisation_id, legal_basis, purposes, lifecycle_state, external_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        person_id, fields["first_name"], fields["last_name"], fields.get("title"), fields.get("expertise"),
        fields.get("emails") or [], fields.get("phones") or [], fields.get("other_contact") or {},
        fields.get("organisation_id"), legal_basis, purposes, state.value, external_ref,
    )
    await record_sources(conn, person_id, [f for f in PERSON_FIELDS if fields.get(f) not in (None, [], {})], source)


async def record_sources(conn: Conn, person_id: uuid.UUID, field_names: list[str], source: str) -> None:
    """R4: each field remembers where its current value came from."""
    if not field_names:
        return
    await conn.execute(
        "INSERT INTO field_sources (person_id, field, source) SELECT $1, f, $3 FROM unnest($2::text[]) AS f"
        " ON CONFLICT (person_id, field) DO UPDATE SET source = EXCLUDED.source, recorded_at = now()",
        person_id, field_names, source,
    )


async def get_person(conn: Conn, person_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = $1{lock}", person_id))


async def person_by_external_ref(conn: Conn, external_ref: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE external_ref = $1 FOR UPDATE",
                                    external_ref))


async def field_sources(conn: Conn, person_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT field, source, recorded_at FROM field_sources WHERE person_id = $1", person_id)
    return {r["field"]: {"source": r["source"], "recorded_at": r["recorded_at"]} for r in rows}


async def update_person(conn: Conn, person_id: uuid.UUID, changes: dict[str, Any], source: str) -> None:
    """Set the changed fields (names from PERSON_FIELDS only) and their source."""
    names = [f for f in PERSON_FIELDS if f in changes]
    if not names:
        return
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    await conn.execute(f"UPDATE persons SET {assignments}, updated_at = now() WHERE id = $1",
                       person_id, *[changes[n] for n in names])
    await record_sources(conn, person_id, names, source)


async def set_state(conn: Conn, person_id: uuid.UUID, state: State) -> None:
    await conn.execute("UPDATE persons SET lifecycle_state = $2, state_changed_at = now(), updated_at = now()"
                       " WHERE id = $1", person_id, state.value)


async def add_purposes(conn: Conn, person_id: uuid.UUID, purposes: list[str]) -> None:
    await conn.execute(
        "UPDATE persons SET purposes = ARRAY(SELECT DISTINCT unnest(purposes || $2::text[])) WHERE id = $1",
        person_id, purposes)


async def search_persons(conn: Conn, *, name: str | None, email: str | None, phone: str | None,
                         organisation_id: uuid.UUID | None, include_passive: bool, limit: int) -> list[dict[str, Any]]:
    clauses, args = ["lifecycle_state <> 'erased'"], []
    if not include_passive:
        clauses.append("lifecycle_state <> 'passive'")
    if name:
        args.append(f"%{name.lower()}%")
        clauses.append(f"(lower(last_name) LIKE ${len(args)} OR lower(first_name) LIKE ${len(args)})")
    if email:
        args.append(email)
        clauses.append(f"emails @> ARRAY[${len(args)}::text]")
    if phone:
        args.append(phone)
        clauses.append(f"phones @> ARRAY[${len(args)}::text]")
    if organisation_id:
        args.append(organisation_id)
        clauses.append(f"organisation_id = ${len(args)}")
    args.append(limit)
    rows = await conn.fetch(f"SELECT {PERSON_COLUMNS} FROM persons WHERE {' AND '.join(clauses)}"
                            f" ORDER BY last_name, first_name, id LIMIT ${len(args)}", *args)
    return [dict(r) for r in rows]


async def persons_with_contact_points(conn: Conn, emails: list[str], phones: list[str]) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM persons WHERE emails && $1::text[] OR phones && $2::text[]",
                            emails, phones)
    return [r["id"] for r in rows]


# ---- relationships and assignments (R5, R6, P2) -----------------------------------------

async def insert_relationship(conn: Conn, rel_id: uuid.UUID, person_id: uuid.UUID, organisation_id: uuid.UUID | None,
                              kind: str, started_at: datetime, source: str) -> bool:
    """True if this opened the relationship; a start arriving after its end only fills in facts."""
    opened = await conn.fetchval(
        "INSERT INTO relationships (id, person_id, organisation_id, kind, started_at, source)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
        "  kind = COALESCE(relationships.kind, EXCLUDED.kind), started_at = COALESCE(relationships.started_at,"
        "  EXCLUDED.started_at), organisation_id = COALESCE(relationships.organisation_id, EXCLUDED.organisation_id)"
        " WHERE relationships.person_id = EXCLUDED.person_id AND relationships.started_at IS NULL"
        " RETURNING xmax = 0", rel_id, person_id, organisation_id, kind, started_at, source)
    return bool(opened)


async def get_relationship(conn: Conn, rel_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow("SELECT * FROM relationships WHERE id = $1", rel_id))


async def end_relationship(conn: Conn, rel_id: uuid.UUID, ended_at: datetime) -> bool:
    status = await conn.execute("UPDATE relationships SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
                                rel_id, ended_at)
    return status.endswith(" 1")


async def end_relationship_seen_first(conn: Conn, rel_id: uuid.UUID, person_id: uuid.UUID, ended_at: datetime,
                                      source: str) -> bool:
    """An end whose start has not arrived: recorded as ended; False if the id is already taken."""
    status = await conn.execute(
        "INSERT INTO relationships (id, person_id, ended_at, source) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO NOTHING", rel_id, person_id, ended_at, source)
    return status.endswith(" 1")


async def ensure_assignment(conn: Conn, assignment_id: uuid.UUID, given_by: str | None, title: str | None,
                            started_at: datetime | None, source: str) -> None:
    """The assignment, created by whichever of its events arrives first; later facts fill it in."""
    await conn.execute(
        "INSERT INTO assignments (id, given_by, title, started_at, source) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO UPDATE SET given_by = COALESCE(assignments.given_by, EXCLUDED.given_by),"
        "  started_at = COALESCE(assignments.started_at, EXCLUDED.started_at)"
        " WHERE assignments.given_by IS NULL OR assignments.started_at IS NULL",
        assignment_id, given_by, title, started_at, source)


async def get_assignment(conn: Conn, assignment_id: uuid.UUID) -> dict[str, Any] | None:
    row = _row(await conn.fetchrow("SELECT * FROM assignments WHERE id = $1", assignment_id))
    if row is not None:
        row["participants"] = [dict(r) for r in await conn.fetch(
            "SELECT person_id, started_at, ended_at FROM assignment_participants WHERE assignment_id = $1"
            " ORDER BY person_id", assignment_id)]
    return row


async def add_participant(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID, started_at: datetime) -> bool:
    """True if this opened the participation; a start arriving after its end only fills in the time."""
    opened = await conn.fetchval(
        "INSERT INTO assignment_participants (assignment_id, person_id, started_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (assignment_id, person_id) DO UPDATE SET started_at = EXCLUDED.started_at"
        " WHERE assignment_participants.started_at IS NULL RETURNING xmax = 0", assignment_id, person_id, started_at)
    return bool(opened)


async def end_participation_seen_first(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID,
                                       ended_at: datetime) -> bool:
    """An end whose start has not arrived: recorded as ended participation."""
    await ensure_assignment(conn, assignment_id, None, None, None, "service_event")
    status = await conn.execute(
        "INSERT INTO assignment_participants (assignment_id, person_id, ended_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING", assignment_id, person_id, ended_at)
    await _end_assignment_when_no_one_is_left(conn, assignment_id, ended_at)
    return status.endswith(" 1")


async def end_participation(conn: Conn, assignment_id: uuid.UUID, person_id: uuid.UUID, ended_at: datetime) -> bool:
    status = await conn.execute(
        "UPDATE assignment_participants SET ended_at = $3"
        " WHERE assignment_id = $1 AND person_id = $2 AND ended_at IS NULL", assignment_id, person_id, ended_at)
    await _end_assignment_when_no_one_is_left(conn, assignment_id, ended_at)
    return status.endswith(" 1")


async def _end_assignment_when_no_one_is_left(conn: Conn, assignment_id: uuid.UUID, ended_at: datetime) -> None:
    await conn.execute(
        "UPDATE assignments SET status = 'ended', ended_at = $2 WHERE id = $1 AND status = 'open' AND NOT EXISTS"
        " (SELECT 1 FROM assignment_participants WHERE assignment_id = $1 AND ended_at IS NULL)",
        assignment_id, ended_at)


async def open_connections(conn: Conn, person_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM relationships WHERE person_id = $1 AND ended_at IS NULL)"
        " + (SELECT count(*) FROM assignment_participants WHERE person_id = $1 AND ended_at IS NULL)", person_id)


# ---- orders, approvals, cancellations, interactions -------------------------------------

async def insert_service_record(conn: Conn, person_id: uuid.UUID, record: dict[str, Any], source: str) -> uuid.UUID:
    record_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO service_records (id, person_id, kind, occurred_at, description, purposes, source)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        record_id, person_id, record["kind"], record["occurred_at"], record["description"], record["purposes"], source)
    return record_id


# ---- accounts (R11) ---------------------------------------------------------------------

async def insert_account(conn: Conn, person_id: uuid.UUID, username: str, nickname: str | None,
                         identifiers: dict[str, str], code_hash: str, code_expires_at: datetime) -> None:
    """An account without a password: the person sets it with the activation code."""
    await conn.execute(
        "INSERT INTO accounts (person_id, username, nickname, identifiers, activation_code_hash,"
        " activation_expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        person_id, username, nickname, identifiers, code_hash, code_expires_at)


async def account_by_username(conn: Conn, username: str) -> dict[str, Any] | None:
    """Read without a lock: the slow hash is checked outside any transaction."""
    return _row(await conn.fetchrow(
        "SELECT a.*, p.lifecycle_state FROM accounts a JOIN persons p ON p.id = a.person_id"
        " WHERE a.username = $1", username))


async def account_of(conn: Conn, person_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT * FROM accounts WHERE person_id = $1{lock}", person_id))


async def set_login_failures(conn: Conn, person_id: uuid.UUID, failed: int, locked_until: datetime | None) -> None:
    await conn.execute("UPDATE accounts SET failed_attempts = $2, locked_until = $3 WHERE person_id = $1",
                       person_id, failed, locked_until)


async def set_password_hash(conn: Conn, person_id: uuid.UUID, password_hash: str, *, revoke_tokens: bool = True
                            ) -> int:
    """A new password; earlier tokens die with it (the token version moves on)."""
    return await conn.fetchval(
        "UPDATE accounts SET password_hash = $2, password_changed_at = now(), failed_attempts = 0,"
        " locked_until = NULL, activation_code_hash = NULL, activation_expires_at = NULL,"
        " activated_at = coalesce(activated_at, now()),"
        " token_version = token_version + CASE WHEN $3 THEN 1 ELSE 0 END"
        " WHERE person_id = $1 RETURNING token_version", person_id, password_hash, revoke_tokens)


async def disable_account(conn: Conn, person_id: uuid.UUID) -> bool:
    status = await conn.execute("UPDATE accounts SET disabled_at = now(), token_version = token_version + 1"
                                " WHERE person_id = $1 AND disabled_at IS NULL", person_id)
    return status.endswith(" 1")


async def token_state(conn: Conn, person_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow("SELECT token_version, disabled_at FROM accounts WHERE person_id = $1",
                                    person_id))


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


# ---- rectification (R14) ----------------------------------------------------------------

async def insert_rectification(conn: Conn, person_id: uuid.UUID, requested_by: str, changes: dict[str, Any],
                               reason: str | None) -> uuid.UUID:
    rect_id = uuid.uuid4()
    await conn.execute("INSERT INTO rectifications (id, person_id, requested_by, changes, reason)"
                       " VALUES ($1, $2, $3, $4, $5)", rect_id, person_id, requested_by, changes, reason)
    return rect_id


async def get_rectification(conn: Conn, rect_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT * FROM rectifications WHERE id = $1{lock}", rect_id))


async def decide_rectification(conn: Conn, rect_id: uuid.UUID, status: str, decided_by: str, reason: str) -> None:
    await conn.execute("UPDATE rectifications SET status = $2, decided_by = $3, decision_reason = $4,"
                       " decided_at = now() WHERE id = $1", rect_id, status, decided_by, reason)


async def lifecycle_states(conn: Conn, person_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch("SELECT id, lifecycle_state FROM persons WHERE id = ANY($1::uuid[])", person_ids)
    return {r["id"]: r["lifecycle_state"] for r in rows}


async def pending_rectifications(conn: Conn, limit: int = 200) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT r.id, r.person_id, r.requested_by, r.created_at FROM rectifications r"
                            " WHERE r.status = 'pending' ORDER BY r.created_at LIMIT $1", limit)
    return [dict(r) for r in rows]


# ---- final disposition (R7) -------------------------------------------------------------

async def erased_at(conn: Conn, person_id: uuid.UUID) -> datetime | None:
    return await conn.fetchval("SELECT erased_at FROM erased_persons WHERE person_id = $1", person_id)


async def is_erased(conn: Conn, person_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_persons WHERE person_id = $1", person_id))


async def erase_person(conn: Conn, person_id: uuid.UUID, command_id: uuid.UUID | None) -> None:
    """Everything about the person goes (cascades); only the id is kept, to answer late events."""
    await conn.execute("DELETE FROM persons WHERE id = $1", person_id)
    await scrub_access_requests(conn, person_id)
    await conn.execute("INSERT INTO erased_persons (person_id, command_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       person_id, command_id)


async def keep_marketing_data_only(conn: Conn, person_id: uuid.UUID) -> None:
    """R7/R9: the marketing register keeps name, title, contact points and employer only."""
    for table in ("accounts", "relationships", "assignment_participants", "service_records", "rectifications"):
        await conn.execute(f"DELETE FROM {table} WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM field_sources WHERE person_id = $1 AND NOT (field = ANY($2::text[]))",
                       person_id, list(MARKETING_FIELDS))
    await conn.execute("UPDATE persons SET expertise = NULL, other_contact = '{}'::jsonb, external_ref = NULL,"
                       " purposes = ARRAY['customer_relationship'], legal_basis = 'consent',"
                       " lifecycle_state = 'marketing',"
                       " state_changed_at = now(), updated_at = now() WHERE id = $1", person_id)


# ---- everything about one person (for the later access report, R12) ---------------------

async def person_everything(conn: Conn, person_id: uuid.UUID) -> dict[str, Any] | None:
    """All contacts holds about one person, with sources and purposes; no password hash."""
    person = await get_person(conn, person_id)
    if person is None:
        return None
    org = await get_organisation(conn, person["organisation_id"]) if person["organisation_id"] else None
    account = await conn.fetchrow("SELECT username, nickname, identifiers, created_at, password_changed_at"
                                  " FROM accounts WHERE person_id = $1", person_id)
    return {
        "person": person,
        "field_sources": await field_sources(conn, person_id),
        "organisation": org,
        "account": _row(account),
        "relationships": [dict(r) for r in await conn.fetch(
            "SELECT * FROM relationships WHERE person_id = $1 ORDER BY started_at", person_id)],
        "assignments": [dict(r) for r in await conn.fetch(
            "SELECT a.id, a.given_by, a.title, a.status, a.source, p.started_at, p.ended_at FROM assignment_participants p"
            " JOIN assignments a ON a.id = p.assignment_id WHERE p.person_id = $1 ORDER BY p.started_at", person_id)],
        "service_records": [dict(r) for r in await conn.fetch(
            "SELECT * FROM service_records WHERE person_id = $1 ORDER BY occurred_at", person_id)],
        "marketing_bans": await bans_of(conn, person_id),
        "rectifications": [dict(r) for r in await conn.fetch(
            "SELECT * FROM rectifications WHERE person_id = $1 ORDER BY created_at", person_id)],
        "purposes": {"person": person["purposes"], **SECTION_PURPOSES},
    }


# ---- access requests (R12) --------------------------------------------------------------

ACCESS_COLUMNS = ("id, person_id, emails, phones, contact_digests, channel, verified_by, verification_notes, requested_by,"
                  " chargeable, status, decision, decision_reason, decided_by, decided_at, expected_services,"
                  " created_at, asked_at, fulfilled_at")


async def insert_access_request(conn: Conn, request: dict[str, Any]) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO access_requests (id, person_id, emails, phones, contact_digests, channel, verified_by,"
        " verification_notes, requested_by, chargeable, status, expected_services, asked_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " CASE WHEN $11 = 'collecting' THEN clock_timestamp() END)"
        f" RETURNING {ACCESS_COLUMNS}",
        request["id"], request["person_id"], request["emails"], request["phones"], request["contact_digests"],
        request["channel"], request["verified_by"], request["verification_notes"], request["requested_by"],
        request["chargeable"], request["status"], request["expected_services"])
    return dict(row)


async def get_access_request(conn: Conn, request_id: uuid.UUID, *, for_update: bool = False
                             ) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    return _row(await conn.fetchrow(f"SELECT {ACCESS_COLUMNS} FROM access_requests WHERE id = $1{lock}", request_id))


async def access_requests_by_status(conn: Conn, status: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, person_id, channel, chargeable, status, created_at FROM access_requests"
                            " WHERE status = $1 ORDER BY created_at LIMIT $2", status, limit)
    return [dict(r) for r in rows]


async def earlier_access_requests(conn: Conn, person_id: uuid.UUID | None, digests: list[str]
                                  ) -> list[dict[str, Any]]:
    """The person's earlier requests (not refused ones): by person id, or, for a request naming no
    known person, by the same contact points (a shared switchboard number must not count)."""
    rows = await conn.fetch(
        "SELECT id, channel, status, chargeable, created_at FROM access_requests WHERE status <> 'refused'"
        " AND (person_id = $1 OR ($1::uuid IS NULL AND contact_digests && $2::text[])) ORDER BY created_at",
        person_id, digests)
    return [dict(r) for r in rows]


async def decide_access_request(conn: Conn, request_id: uuid.UUID, decision: str, reason: str, decided_by: str,
                                status: str) -> None:
    await conn.execute(
        "UPDATE access_requests SET decision = $2, decision_reason = $3, decided_by = $4, decided_at = now(),"
        " status = $5, asked_at = CASE WHEN $5 = 'collecting' THEN clock_timestamp() END,"
        " emails = CASE WHEN $5 = 'refused' THEN '{}' ELSE emails END,"
        " phones = CASE WHEN $5 = 'refused' THEN '{}' ELSE phones END WHERE id = $1",
        request_id, decision, reason, decided_by, status)


async def store_report_part(conn: Conn, request_id: uuid.UUID, service: str, items: list[dict[str, Any]]) -> bool:
    """A service answers once; a repeated answer (a replay) changes nothing."""
    status = await conn.execute(
        "INSERT INTO access_report_parts (request_id, service, items) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        request_id, service, items)
    return status.endswith(" 1")


async def answered_services(conn: Conn, request_id: uuid.UUID) -> list[str]:
    return [r["service"] for r in await conn.fetch(
        "SELECT service FROM access_report_parts WHERE request_id = $1 ORDER BY service", request_id)]


async def report_parts(conn: Conn, request_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    return {r["service"]: r["items"] for r in await conn.fetch(
        "SELECT service, items FROM access_report_parts WHERE request_id = $1", request_id)}


async def mark_access_fulfilled(conn: Conn, request_id: uuid.UUID) -> None:
    """Assembled: the contact points asked about are no longer needed on the request itself."""
    await conn.execute("UPDATE access_requests SET status = 'fulfilled', fulfilled_at = clock_timestamp(),"
                       " emails = '{}', phones = '{}' WHERE id = $1", request_id)


async def scrub_access_requests(conn: Conn, person_id: uuid.UUID) -> None:
    """R7: on erasure, the content of the person's reports and the contact points asked about go;
    the fact that a request was made and who answered it (ids, dates) stays, so a request still
    collecting completes, empty."""
    await conn.execute("UPDATE access_report_parts SET items = '[]'::jsonb WHERE request_id IN"
                       " (SELECT id FROM access_requests WHERE person_id = $1)", person_id)
    await conn.execute("UPDATE access_requests SET emails = '{}', phones = '{}', contact_digests = '{}',"
                       " verification_notes = NULL WHERE person_id = $1", person_id)
