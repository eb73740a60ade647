"""Finding 10, the parts of issue 16 owned here: the marketing export is paged and streamed;
the audit log's append-only rule has no session-setting bypass, only a SECURITY DEFINER
function of a separate role (R10); log redaction masks phones but not plain numbers."""
from __future__ import annotations

import asyncpg
import pytest

from shared.logging import scrub_text
from tests.helpers import auth
from tests.security.conftest import new_person

MARKETING = auth("marketing", user="mk-export")


async def test_the_marketing_export_is_paged(contacts):
    for _ in range(3):
        await new_person(contacts)
    first = await contacts.http.get("/marketing/export", params={"limit": 2}, headers=MARKETING)
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/json")
    page = first.json()
    assert len(page["persons"]) <= 2 and page["next"] is not None
    second = (await contacts.http.get("/marketing/export", params={"limit": 2, "cursor": page["next"]},
                                      headers=MARKETING)).json()
    assert not {p["id"] for p in page["persons"]} & {p["id"] for p in second["persons"]}
    too_many = await contacts.http.get("/marketing/export", params={"limit": 1_000_000}, headers=MARKETING)
    assert too_many.status_code == 422 and "limit" in too_many.json()["fields"]


async def test_a_session_setting_no_longer_opens_the_audit_log(contacts):
    pid = await new_person(contacts)
    async with contacts.runtime.pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            async with conn.transaction():
                await conn.execute("SET LOCAL rekisteri.erasing = 'on'")
                await conn.execute("DELETE FROM audit_log WHERE person_id = $1", pid)
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE person_id = $1", pid) >= 1


async def test_audit_rows_are_erased_only_through_the_definer_function_of_its_own_role(contacts):
    pid = await new_person(contacts)
    pool = contacts.runtime.pool
    owner = await pool.fetchval("SELECT pg_get_userbyid(proowner) FROM pg_proc p JOIN pg_namespace n"
                                " ON n.oid = p.pronamespace WHERE proname = 'erase_audit_entries'"
                                " AND nspname = current_schema()")
    assert owner == "rekisteri_audit_eraser"
    assert await pool.fetchval("SELECT erase_audit_entries($1)", pid) >= 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE person_id = $1", pid) == 0


@pytest.mark.parametrize("text", ["message too large: 1048577 bytes", "offset 123456789 of 987654321",
                                  "took 0.0012345 s", "at 2026-12-01T19:53:43Z"])
def test_plain_numbers_survive_redaction(text):
    assert scrub_text(text) == text


@pytest.mark.parametrize("text", ["call +358 40 123 4567", "040-123 4567", "(09) 1234 567", "0401234567",
                                  "00358 40 1234567"])
def test_phone_numbers_are_masked(text):
    assert "[phone]" in scrub_text(text) and not any(ch.isdigit() for ch in scrub_text(text).replace("[phone]", ""))
