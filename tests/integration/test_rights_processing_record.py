"""The record of processing activities (GDPR Art. 30, SPEC §10) on the real database: generated
from configuration and code, it lists every field contacts stores (compared with the database
catalogue), the purposes with their legal bases, the sources, the processors, the one transfer,
and the retention settings in force: changing RETENTION_GRACE_DAYS changes it."""
from __future__ import annotations

from services.contacts.domain import PERSON_FIELDS
from shared.messaging.events import DataSource, LegalBasis, ProcessingPurpose
from tests.integration.test_rights_deadlines import OWNER, USER, contacts  # noqa: F401 - fixture
from tests.integration.test_rights_processors import processor


async def record(contacts, **params) -> dict:
    resp = await contacts.http.get("/processing-record", headers=OWNER, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_the_record_lists_every_field_the_register_stores(contacts):
    """Compared with the schema catalogue: every column of every contacts table, categorised."""
    rec = await record(contacts)
    listed = {(t["table"], f) for c in rec["data_categories"] for t in c["tables"] for f in t["fields"]}
    rows = await contacts.runtime.pool.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t"
        " USING (table_schema, table_name) WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'")
    stored = {(r["table_name"], r["column_name"]) for r in rows}
    assert stored and stored == listed
    assert "uncategorised" not in {c["category"] for c in rec["data_categories"]}
    persons = next(t for c in rec["data_categories"] for t in c["tables"] if t["table"] == "persons")
    assert set(PERSON_FIELDS) <= set(persons["fields"]) and set(rec["person_fields"]) == set(PERSON_FIELDS)
    assert "password_hash" in next(t["fields"] for c in rec["data_categories"] for t in c["tables"]
                                   if t["table"] == "accounts")
    assert {"consent", "retention", "billing"} <= set(rec["other_services"])


async def test_the_record_names_purposes_bases_sources_controller_and_the_one_transfer(contacts):
    rec = await record(contacts)
    assert [p["code"] for p in rec["purposes"]] == ["P1", "P2", "P3"]
    assert {p["purpose"] for p in rec["purposes"]} == {p.value for p in ProcessingPurpose}
    assert {b for p in rec["purposes"] for b in p["legal_bases"]} == {b.value for b in LegalBasis}
    assert rec["sources"] == [s.value for s in DataSource]
    assert rec["controller"]["name"] == contacts.runtime.settings.controller_name
    assert rec["recipients"]["third_parties"] == []  # R9
    assert "first_name" in rec["transfers"]["marketing_register"]["fields"]


async def test_a_processor_outside_the_eea_is_a_processor_and_a_transfer(contacts):
    created = (await contacts.http.post("/processors", headers=OWNER, json=processor(location="US"))).json()
    rec = await record(contacts)
    assert created["business_id"] in [p["business_id"] for p in rec["processors"]]
    assert created["name"] in rec["transfers"]["third_countries"]
    await contacts.http.delete(f"/processors/{created['id']}", headers=OWNER)


async def test_the_record_changes_when_a_retention_setting_changes(contacts, monkeypatch):
    before = (await record(contacts))["retention"]
    monkeypatch.setenv("RETENTION_GRACE_DAYS", str(before["passivation_grace_days"] + 30))
    monkeypatch.setenv("RETENTION_DISPOSITION_DAYS", "200")
    after = (await record(contacts))["retention"]
    assert after["passivation_grace_days"] == before["passivation_grace_days"] + 30
    assert after["disposition_days_after_last_assignment"] == 200 != before["disposition_days_after_last_assignment"]


async def test_html_record_in_finnish_and_english_for_the_owner_only(contacts):
    fi = await contacts.http.get("/processing-record", headers=OWNER, params={"format": "html", "lang": "fi"})
    en = await contacts.http.get("/processing-record", headers=OWNER, params={"format": "html", "lang": "en"})
    assert fi.status_code == en.status_code == 200
    assert "Seloste käsittelytoimista" in fi.text and "Record of processing activities" in en.text
    assert "first_name" in en.text and "<script" not in en.text
    assert (await contacts.http.get("/processing-record", headers=USER)).status_code == 403


async def test_the_record_says_banned_points_are_keyed_digests_and_topic_fields_sealed(contacts):
    """Art. 30(1)(g) as the code does it (SPEC §9, issue 15): the suppression list keeps
    HMAC-SHA256 digests under REKISTERI_SUPPRESSION_KEY (the record had said plain sha256),
    and personal fields travel sealed under the person's data key."""
    security = (await record(contacts))["security"]
    assert security["banned_contact_points_stored_as"].startswith("HMAC-SHA256")
    assert "REKISTERI_SUPPRESSION_KEY" in security["banned_contact_points_stored_as"]
    assert "AES-256-GCM" in security["personal_fields_on_topics_and_outbox"]
