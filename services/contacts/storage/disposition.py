"""Final disposition (R7) and everything held about one person (for the access report, R12)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


from services.contacts.domain import MARKETING_FIELDS, SECTION_PURPOSES

from services.contacts.storage.common import Conn, _row
from services.contacts.storage.persons import field_sources, get_organisation, get_person
from services.contacts.storage.suppression import bans_of
from services.contacts.storage.access_requests import scrub_access_requests
from services.contacts.request_storage import drop_personal_text
from shared.privacy.ledger import record_erasures
from shared.privacy.naming import named_in


# ---- final disposition (R7) -------------------------------------------------------------

async def erased_at(conn: Conn, person_id: uuid.UUID) -> datetime | None:
    return await conn.fetchval("SELECT erased_at FROM erased_persons WHERE person_id = $1", person_id)


async def is_erased(conn: Conn, person_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM erased_persons WHERE person_id = $1", person_id))


async def erasure_decided(conn: Conn, person_id: uuid.UUID) -> bool:
    """The register owner decided an erasure request of this person `erase` (Art. 17, issue 14):
    retention's erasure command then applies even while a relationship lasts."""
    return bool(await conn.fetchval("SELECT true FROM subject_requests WHERE person_id = $1 AND kind = 'erasure'"
                                    " AND decision = 'erase' LIMIT 1", person_id))


async def erase_person(conn: Conn, person_id: uuid.UUID, command_id: uuid.UUID | None) -> None:
    """Everything about the person goes (cascades); only the id is kept, to answer late events,
    here and in the register's erasure ledger (issue 15)."""
    await conn.execute("DELETE FROM persons WHERE id = $1", person_id)
    await scrub_access_requests(conn, person_id)
    await drop_personal_text(conn, person_id)  # the requests' dates stay, their free text goes
    await conn.execute("DELETE FROM portability_exports WHERE person_id = $1", person_id)  # Art. 20 parts too
    await conn.execute("INSERT INTO erased_persons (person_id, command_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       person_id, command_id)
    await record_erasures(conn, [person_id])  # outside every backup: a restore erases them again (SPEC §9)


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


async def message_keys_of(conn: Conn, person_id: uuid.UUID) -> list[str]:
    """Message keys besides the person id that name the person in contacts' outbox and dead
    letters: the external ref its imports are keyed by, and its access requests' ids."""
    ref = await conn.fetchval("SELECT external_ref FROM persons WHERE id = $1", person_id)
    requests = await conn.fetch("SELECT id FROM access_requests WHERE person_id = $1", person_id)
    return [*([ref] if ref else []), *(str(r["id"]) for r in requests)]


async def contact_points_of(conn: Conn, person_id: uuid.UUID) -> tuple[list[str], list[str]]:
    """Every email and phone contacts knows of the person, held now or asked for in a
    rectification: what their dead letters may name (issue 15), read before they are erased."""
    row = await conn.fetchrow("SELECT emails, phones FROM persons WHERE id = $1", person_id)
    emails, phones = set(row["emails"]) if row else set(), set(row["phones"]) if row else set()
    for changes in await conn.fetch("SELECT changes::text AS c FROM rectifications WHERE person_id = $1", person_id):
        named = named_in(changes["c"].encode())
        emails |= named.emails
        phones |= named.phones
    return sorted(emails), sorted(phones)

