"""Cursor paging of the list routes on the real database (issue 20): a walk with `next` sees
every row exactly once, in order, with ties on the sort time broken by id; a forged cursor is
a 422 naming `cursor` (SPEC §7)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.retention.domain import FrozenClock
from tests.helpers import auth

OWNER = auth("register_owner")


async def walk(client: Any, path: str, key: str, *, limit: int, params: dict[str, Any] | None = None,
               headers: dict[str, str] = OWNER) -> list[dict[str, Any]]:
    """Every item of a paged list, following `next` until it is null."""
    items, cursor, pages = [], None, 0
    while True:
        query = {**(params or {}), "limit": limit, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(path, params=query, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body[key]) <= limit
        items += body[key]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return items
        assert pages < 1000, "the walk does not end"


@pytest.fixture
async def retention(start_service):
    svc = await start_service("retention", retention_scheduler_interval_s=3600)
    svc.runtime.clock = FrozenClock(datetime.now(UTC))
    return svc


async def test_retention_held_report_pages_through_every_hold_once(retention):
    """Holds sharing one expiry time are still each shown once (the id breaks the tie)."""
    now = retention.runtime.clock.now()
    expiry = now + timedelta(days=100)
    ids = [uuid.uuid4() for _ in range(7)]
    await retention.runtime.pool.executemany(
        "INSERT INTO holds (hold_id, person_id, reason, expires_at, created_by, created_at)"
        " VALUES ($1, $2, 'paging test', $3, 'tester', $4)",
        [(h, uuid.uuid4(), expiry + timedelta(seconds=i // 3), now) for i, h in enumerate(ids)])
    try:
        items = await walk(retention.http, "/reports/held", "items", limit=2)
    finally:  # the session's database is shared: leave no holds of persons nobody knows
        await retention.runtime.pool.execute("DELETE FROM holds WHERE hold_id = ANY($1::uuid[])", ids)
    seen = [uuid.UUID(i["hold_id"]) for i in items]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    assert [i["expires_at"] for i in items] == sorted(i["expires_at"] for i in items)


async def test_retention_due_and_overdue_reports_page_through_every_row_once(retention):
    pool, now = retention.runtime.pool, retention.runtime.clock.now()
    people = [uuid.uuid4() for _ in range(5)]
    await pool.executemany(
        "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
        " VALUES ($1, 'passivate', $2, 'paging test', $2, 'test')", [(p, now - timedelta(days=1)) for p in people])
    commands = [uuid.uuid4() for _ in range(5)]
    await pool.executemany(
        "INSERT INTO evidence (command_id, person_id, action, basis, deadline_at, policy_version, commanded_at,"
        " last_commanded_at, expected, overdue_since) VALUES ($1, $2, 'erase', 'paging test', $3, 'test', $3, $3,"
        " '{contacts}', $3)", [(c, uuid.uuid4(), now - timedelta(days=3)) for c in commands])
    try:
        due = await walk(retention.http, "/reports/due", "items", limit=2, params={"days": 0})
        overdue = await walk(retention.http, "/reports/overdue", "items", limit=3)
    finally:  # the session's database is shared: the scheduler must not see these
        await pool.execute("DELETE FROM deadlines WHERE person_id = ANY($1::uuid[])", people)
        await pool.execute("DELETE FROM evidence WHERE command_id = ANY($1::uuid[])", commands)
    due_people = [uuid.UUID(i["person_id"]) for i in due]
    assert len(due_people) == len(set(due_people)) and set(people) <= set(due_people)
    seen = [uuid.UUID(i["command_id"]) for i in overdue]
    assert len(seen) == len(set(seen)) and set(commands) <= set(seen)


async def test_retention_blocked_dispositions_page_through_every_row_once(retention):
    """Issue 20: the blocked list of the overdue report was cut at `limit`. Its first page is in
    `/reports/overdue` with `blocked_next`, the rest in `/reports/blocked`; rows sharing a
    deadline (a hold-kept and command-kept one of one person among them) each show once."""
    pool, now = retention.runtime.pool, retention.runtime.clock.now()
    deadline = now - timedelta(days=2)
    commands, held = [uuid.uuid4() for _ in range(5)], [uuid.uuid4() for _ in range(2)]
    owners = [held[0], *(uuid.uuid4() for _ in commands[1:])]  # held[0] is kept by a hold and a command
    await pool.executemany(
        "INSERT INTO evidence (command_id, person_id, action, basis, deadline_at, policy_version, commanded_at,"
        " last_commanded_at, expected, overdue_since) VALUES ($1, $2, 'erase', 'paging test', $3, 'test', $3, $3,"
        " '{contacts}', $3)", [(c, p, deadline) for c, p in zip(commands, owners)])
    await pool.executemany(
        "INSERT INTO deadlines (person_id, action, due_at, basis, anchor_at, policy_version)"
        " VALUES ($1, 'dispose', $2, 'paging test', $2, 'test')", [(p, deadline) for p in held])
    holds = [uuid.uuid4() for _ in held]
    await pool.executemany(
        "INSERT INTO holds (hold_id, person_id, reason, expires_at, created_by, created_at)"
        " VALUES ($1, $2, 'paging test', $3, 'tester', $4)", [(h, p, now + timedelta(days=30), now)
                                                             for h, p in zip(holds, held)])
    try:
        first = (await retention.http.get("/reports/overdue", params={"limit": 2}, headers=OWNER)).json()
        rest = await walk(retention.http, "/reports/blocked", "items", limit=2,
                          params={"cursor": first["blocked_next"]})
        whole = await walk(retention.http, "/reports/blocked", "items", limit=3)
    finally:  # the session's database is shared: the scheduler must not see these
        await pool.execute("DELETE FROM deadlines WHERE person_id = ANY($1::uuid[])", held)
        await pool.execute("DELETE FROM holds WHERE hold_id = ANY($1::uuid[])", holds)
        await pool.execute("DELETE FROM evidence WHERE command_id = ANY($1::uuid[])", commands)
    assert len(first["blocked"]) == 2 and first["blocked_next"] is not None
    assert first["blocked_count"] >= len(set(owners) | set(held))

    def rows(items: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
        return [(i["person_id"], i["blocked_by"], i["command_id"]) for i in items]
    ours = {(str(p), "unconfirmed", str(c)) for c, p in zip(commands, owners)} | {(str(p), "hold", None) for p in held}
    for walked in (rows(first["blocked"]) + rows(rest), rows(whole)):
        assert len(walked) == len(set(walked)), "a row was shown twice"
        assert ours <= set(walked), f"rows never shown: {ours - set(walked)}"


async def test_a_forged_cursor_is_a_422_naming_the_cursor(retention):
    answer = await retention.http.get("/reports/held", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=OWNER)
    assert answer.status_code == 422 and answer.json()["fields"] == {"cursor": "not a valid cursor"}
    too_many = await retention.http.get("/reports/held", params={"limit": 1001}, headers=OWNER)
    assert too_many.status_code == 422 and "limit" in too_many.json()["fields"]


# ---- the routes paged since issue 20: each walked with a small limit sees every row once ----

USER = auth("register_user")
FAST_HASHES = dict(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture
async def contacts(start_service):
    return await start_service("contacts", **FAST_HASHES)


def once(items: list[dict[str, Any]], mine: set[str], key: str = "id") -> list[str]:
    """The walk's ids: none twice, and every one of `mine` among them."""
    ids = [str(i[key]) for i in items]
    assert len(ids) == len(set(ids)), "a row was shown twice"
    assert mine <= set(ids), f"rows never shown: {mine - set(ids)}"
    return ids


async def person_in(contacts: Any, organisation_id: str | None = None) -> str:
    answer = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Eino", "last_name": "Esimerkki", "emails": [f"eino.{uuid.uuid4().hex[:8]}@example.fi"],
        "legal_basis": "customer_relationship", "purposes": ["customer_relationship"], "source": "person_meeting",
        **({"organisation_id": organisation_id} if organisation_id else {})})
    assert answer.status_code == 201, answer.text
    return answer.json()["person"]["id"]


def business_id(serial: int) -> str:
    """A y-tunnus with its check digit (weights 7 9 10 5 8 4 2, mod 11; remainder 1 is never issued)."""
    while True:
        digits = f"{serial % 10_000_000:07d}"
        rest = sum(int(d) * w for d, w in zip(digits, (7, 9, 10, 5, 8, 4, 2))) % 11
        if rest != 1:
            return f"{digits}-{0 if rest == 0 else 11 - rest}"
        serial += 1


async def test_person_search_pages_by_registration_without_repeats(contacts):
    org = await contacts.http.post("/organisations", headers=USER, json={"name": f"Sivutus {uuid.uuid4().hex[:6]} Oy"})
    assert org.status_code == 201, org.text
    mine = {await person_in(contacts, org.json()["id"]) for _ in range(5)}
    found = await walk(contacts.http, "/persons", "persons", limit=2, params={"organisation_id": org.json()["id"]},
                       headers=USER)
    assert set(once(found, mine)) == mine


async def test_a_persons_audit_trail_pages_newest_first_and_shows_every_entry_once(contacts):
    pid = await person_in(contacts)
    for _ in range(4):
        assert (await contacts.http.get(f"/persons/{pid}", headers=USER)).status_code == 200
    entries = await walk(contacts.http, f"/audit/persons/{pid}", "entries", limit=2)
    stored = await contacts.runtime.pool.fetchval("SELECT count(*) FROM audit_log WHERE person_id = $1", pid)
    assert len(entries) == stored >= 5
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)


async def five_rectifications(contacts, pid: str) -> set[str]:
    """Five rectification requests of the person, asked by staff: their ids."""
    mine = set()
    for i in range(5):
        answer = await contacts.http.post(f"/persons/{pid}/rectifications", headers=USER,
                                          json={"changes": {"title": f"Title {i}"}, "reason": "paging test"})
        assert answer.status_code == 201, answer.text
        mine.add(answer.json()["id"])
    return mine


async def test_rectifications_page_for_staff_and_for_the_person(contacts):
    pid = await person_in(contacts)
    mine = await five_rectifications(contacts, pid)
    once(await walk(contacts.http, "/rectifications", "pending", limit=2, headers=USER), mine)
    own = await walk(contacts.http, "/me/rectifications", "rectifications", limit=2,
                     headers=auth("subject", person_id=pid))
    assert set(once(own, mine)) == mine
    assert [r["created_at"] for r in own] == sorted((r["created_at"] for r in own), reverse=True)


async def test_access_requests_of_a_person_page_without_repeats(contacts):
    pid = await person_in(contacts)
    mine = set()
    for _ in range(5):
        answer = await contacts.http.post("/access-requests", headers=OWNER, json={
            "person_id": pid, "verification": "in_person", "verified_by": "owner-20"})
        assert answer.status_code == 201, answer.text
        mine.add(answer.json()["id"])
    found = await walk(contacts.http, "/access-requests", "access_requests", limit=2,
                       params={"person_id": pid, "status": "any"})
    assert set(once(found, mine)) == mine


async def test_processors_page_in_registration_order(contacts):
    mine = set()
    try:
        for i in range(5):
            answer = await contacts.http.post("/processors", headers=OWNER, json={
                "name": f"Sivutus {i} Oy", "business_id": business_id(int(uuid.uuid4().int % 10_000_000)),
                "service": "hosting", "purposes": ["customer_relationship"], "location": "FI",
                "agreement_date": "2024-11-01"})
            assert answer.status_code == 201, answer.text
            mine.add(answer.json()["id"])
        found = await walk(contacts.http, "/processors", "processors", limit=2)
    finally:  # the session's processors are named in every access report: leave none behind
        await contacts.runtime.pool.execute("DELETE FROM processors WHERE id = ANY($1::uuid[])", list(mine))
    once(found, mine)
    assert [p["created_at"] for p in found] == sorted(p["created_at"] for p in found)


async def test_the_overdue_request_report_pages_and_counts_them_all(contacts):
    pid = await person_in(contacts)
    mine = await five_rectifications(contacts, pid)
    pool = contacts.runtime.pool
    await pool.execute("UPDATE rights_requests SET received_on = received_on - 120, due_date = due_date - 120"
                       " WHERE id = ANY($1::uuid[])", list(mine))  # received four months ago: overdue
    try:
        found = await walk(contacts.http, "/reports/overdue-requests", "requests", limit=2)
        first = (await contacts.http.get("/reports/overdue-requests", params={"limit": 2}, headers=OWNER)).json()
    finally:  # the session's overdue report must not keep these
        await pool.execute("DELETE FROM rights_requests WHERE id = ANY($1::uuid[])", list(mine))
    once(found, mine)
    assert first["count"] == len(found) and first["next"] is not None


async def test_a_persons_consent_history_pages_while_the_current_choices_stay_whole(start_service):
    consent = await start_service("consent")
    person, staff = uuid.uuid4(), auth("register_user")
    for purpose in ("direct_advertising", "distance_selling", "other_direct_marketing"):
        for decision in ("grant", "withdraw"):
            answer = await consent.http.post(f"/persons/{person}/consents", headers=staff, json={
                "purpose": purpose, "channel": "email", "decision": decision, "method": "phone_call"})
            assert answer.status_code == 200, answer.text
    history = await walk(consent.http, f"/persons/{person}/consents", "history", limit=4, headers=staff)
    assert [(h["purpose"], h["change"]) for h in history] == [
        (p, c) for p in ("direct_advertising", "distance_selling", "other_direct_marketing")
        for c in ("granted", "withdrawn")]
    extra = await consent.http.post(f"/persons/{person}/consents", headers=staff, json={
        "purpose": "direct_advertising", "channel": "sms", "decision": "grant", "method": "phone_call"})
    assert extra.status_code == 200, extra.text
    first = (await consent.http.get(f"/persons/{person}/consents", params={"limit": 1}, headers=staff)).json()
    assert [(c["purpose"], c["channel"]) for c in first["consents"]] == [("direct_advertising", "sms")]
    assert len(first["history"]) == 1 and first["next"] is not None


async def test_the_marketing_register_pages_by_person_without_repeats(start_service):
    consent = await start_service("consent")
    mine = {uuid.uuid4() for _ in range(5)}
    await consent.runtime.pool.executemany("INSERT INTO marketing_register (person_id) VALUES ($1)",
                                           [(m,) for m in mine])
    try:
        found = await walk(consent.http, "/marketing-register", "persons", limit=2, headers=auth("marketing"))
    finally:
        await consent.runtime.pool.execute("DELETE FROM marketing_register WHERE person_id = ANY($1::uuid[])",
                                           list(mine))
    once(found, {str(m) for m in mine}, key="person_id")


async def test_billing_meters_and_plan_versions_page_without_repeats(start_service):
    billing = await start_service("billing")
    staff, prefix = auth("billing"), f"paging_{uuid.uuid4().hex[:6]}"
    meters = {f"{prefix}_{i}" for i in range(5)}
    for name in meters:
        answer = await billing.http.put(f"/billing/meters/{name}", headers=staff, json={"aggregation": "sum"})
        assert answer.status_code == 200, answer.text
    found = await walk(billing.http, "/billing/meters", "meters", limit=2, headers=staff)
    once(found, meters, key="name")
    assert [m["name"] for m in found] == sorted(m["name"] for m in found)
    customer = uuid.uuid4()
    starts = [datetime(2025, month, 1, tzinfo=UTC) for month in range(1, 6)]
    for start in starts:
        answer = await billing.http.put(f"/billing/customers/{customer}/plan", headers=staff,
                                        params={"effective_from": start.isoformat()},
                                        json={"flat_fee": "49.00", "minimum_commitment": "0", "components": []})
        assert answer.status_code == 200, answer.text
    versions = await walk(billing.http, f"/billing/customers/{customer}/plan/versions", "versions", limit=2,
                          headers=staff)
    froms = [datetime.fromisoformat(v["effective_from"]) for v in versions]
    assert froms[-5:] == starts  # the first is the version in force from the start
    assert [v["effective_until"] for v in versions[:-1]] == [v["effective_from"] for v in versions[1:]]
    assert versions[-1]["effective_until"] is None
