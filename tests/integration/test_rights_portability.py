"""Portability (GDPR Art. 20, SPEC §10) on the real database: the person (self-service) or the
register owner takes an export of what the person provided, with the marketing choices contacts
applies, as JSON valid against the published schema and as CSV files in a zip; audited (R10)."""
from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from pathlib import Path

import jsonschema
import pytest

from shared.web.auth import Role
from tests.helpers import auth
from tests.integration.test_rights_deadlines import OWNER, USER, contacts  # noqa: F401 - fixture

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas"
                     / "portability-export.schema.json").read_text())


def subject(pid: str) -> dict[str, str]:
    return auth(Role.subject, user=f"person:{pid}", person_id=pid)


async def person(contacts, source: str) -> str:
    resp = await contacts.http.post("/persons", headers=USER, json={
        "first_name": "Kaisa", "last_name": "Korhonen", "emails": [f"kaisa.{uuid.uuid4().hex[:8]}@example.fi"],
        "phones": ["040 765 4321"], "title": "CTO", "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"], "source": source})
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]["id"]


def test_schema_itself_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


async def test_own_export_validates_against_the_published_schema_and_holds_what_was_provided(contacts):
    pid = await person(contacts, "person_meeting")
    resp = await contacts.http.get("/me/export", headers=subject(pid))
    assert resp.status_code == 200, resp.text
    export = resp.json()
    jsonschema.validate(export, SCHEMA, format_checker=jsonschema.FormatChecker())
    fields = {r["field"]: r for r in export["provided"]}
    assert fields["first_name"]["value"] == "Kaisa" and fields["title"]["source"] == "person_meeting"
    assert fields["phones"]["value"] == ["+358407654321"]
    assert export["person_id"] == pid and export["consents"]["purposes"] == ["customer_relationship"]
    assert any("consent service" in text for text in export["limits"])
    audit = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'portability.export' AND person_id = $1", uuid.UUID(pid))
    assert audit == 1


async def test_data_from_a_register_is_not_provided_but_a_self_service_change_is(contacts):
    """Art. 20 covers data the person provided: a B2B import is not, their own correction is."""
    pid = await person(contacts, "b2b_register")
    changed = await contacts.http.patch("/me", headers=subject(pid), json={"title": "CEO"})
    assert changed.status_code == 200, changed.text
    export = (await contacts.http.get(f"/persons/{pid}/export", headers=OWNER)).json()
    jsonschema.validate(export, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert [(r["field"], r["value"], r["source"]) for r in export["provided"]] == [("title", "CEO", "self_service")]


async def test_zip_export_holds_the_same_content_as_csv(contacts):
    pid = await person(contacts, "person_web")
    resp = await contacts.http.get(f"/persons/{pid}/export", headers=OWNER, params={"format": "zip"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    assert set(archive.namelist()) == {"provided.csv", "account.csv", "consents.csv", "about.csv"}
    rows = list(csv.DictReader(io.StringIO(archive.read("provided.csv").decode())))
    assert {r["field"]: r["value"] for r in rows}["last_name"] == "Korhonen"
    consents = list(csv.DictReader(io.StringIO(archive.read("consents.csv").decode())))
    assert {"kind": "legal_basis", "value": "customer_relationship"} in consents


@pytest.mark.parametrize("who", ["user", "other_subject"])
async def test_export_is_for_the_person_and_the_register_owner_only(contacts, who):
    pid = await person(contacts, "person_meeting")
    if who == "user":
        assert (await contacts.http.get(f"/persons/{pid}/export", headers=USER)).status_code == 403
    else:
        other = await person(contacts, "person_meeting")
        own = (await contacts.http.get("/me/export", headers=subject(other))).json()
        assert own["person_id"] == other
    assert (await contacts.http.get(f"/persons/{uuid.uuid4()}/export", headers=OWNER)).status_code == 404
