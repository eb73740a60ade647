"""Portability (GDPR Art. 20, SPEC §10, issue 14) on the real database and broker: the person
(self-service) or the register owner asks for an export; consent's part (the permissions and bans
the person gave) is gathered on `access-requested` / `access-report-part` as for the access report;
the export, with what the person provided and the bans contacts applies, is JSON valid against
the published schema or CSV files in a zip; audited (R10)."""
from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from pathlib import Path

import jsonschema
import pytest

from services.contacts import storage
from shared.web.auth import Role
from tests.helpers import auth, eventually
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


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


async def ask(contacts, pid: str, headers: dict[str, str], *, own: bool) -> str:
    asked = await contacts.http.post("/me/export" if own else f"/persons/{pid}/export", headers=headers)
    assert asked.status_code == 201, asked.text
    assert asked.json()["expected"] == ["consent"] and asked.json()["status"] == "collecting"
    return asked.json()["id"]


async def export_of(contacts, pid: str, headers: dict[str, str], *, own: bool = False, **params: str):
    """Ask for an export and read it once consent's part is in."""
    export_id = await ask(contacts, pid, headers, own=own)
    served = []

    async def ready() -> bool:
        resp = await contacts.http.get(f"/exports/{export_id}", headers=headers, params=params)
        served.append(resp)
        return resp.status_code == 200
    assert await eventually(ready)
    return served[-1]


def test_schema_itself_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


async def test_own_export_validates_against_the_published_schema_and_holds_what_was_provided(contacts, consent):
    pid = await person(contacts, "person_meeting")
    resp = await export_of(contacts, pid, subject(pid), own=True)
    assert resp.status_code == 200, resp.text
    export = resp.json()
    jsonschema.validate(export, SCHEMA, format_checker=jsonschema.FormatChecker())
    fields = {r["field"]: r for r in export["provided"]}
    assert fields["first_name"]["value"] == "Kaisa" and fields["title"]["source"] == "person_meeting"
    assert fields["phones"]["value"] == ["+358407654321"]
    assert export["person_id"] == pid and export["consents"]["purposes"] == ["customer_relationship"]
    assert export["consents"]["marketing_choices"] == []
    audit = await contacts.runtime.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'portability.export' AND person_id = $1", uuid.UUID(pid))
    assert audit == 1


async def test_issue14_consents_permissions_and_bans_are_in_the_export(contacts, consent):
    """Consent's part arrives on access-report-part: a permission and a ban the person gave."""
    pid = await person(contacts, "person_web")
    choices = [("direct_advertising", "email", "grant"), ("distance_selling", "phone", "ban")]
    for purpose, channel, decision in choices:
        async def changed(purpose=purpose, channel=channel, decision=decision) -> bool:
            resp = await consent.http.post("/me/consents", headers=subject(pid), json={
                "purpose": purpose, "channel": channel, "decision": decision, "method": "self_service_form"})
            return resp.status_code == 200
        assert await eventually(changed)
    export = (await export_of(contacts, pid, OWNER)).json()
    jsonschema.validate(export, SCHEMA, format_checker=jsonschema.FormatChecker())
    got = {(c["purpose"], c["channel"], c["status"]) for c in export["consents"]["marketing_choices"]}
    assert got == {("direct_advertising", "email", "granted"), ("distance_selling", "phone", "banned")}
    archive = zipfile.ZipFile(io.BytesIO((await export_of(contacts, pid, OWNER, format="zip")).content))
    rows = list(csv.DictReader(io.StringIO(archive.read("marketing_choices.csv").decode())))
    assert {(r["purpose"], r["status"]) for r in rows} == {("direct_advertising", "granted"),
                                                            ("distance_selling", "banned")}


async def test_an_export_is_not_served_before_consents_part_is_in(contacts):
    """Issue 14: without consent's answer the export says which service is missing (409)."""
    pid = await person(contacts, "person_web")
    export_id = str(uuid.uuid4())  # recorded without its question on the bus: consent never answers
    await storage.insert_portability_export(contacts.runtime.pool, uuid.UUID(export_id), uuid.UUID(pid), "owner",
                                            ["consent"])
    waiting = await contacts.http.get(f"/exports/{export_id}", headers=OWNER)
    assert waiting.status_code == 409 and waiting.json()["fields"]["missing"] == "consent"


async def test_data_from_a_register_is_not_provided_but_a_self_service_change_is(contacts, consent):
    """Art. 20 covers data the person provided: a B2B import is not, their own correction is."""
    pid = await person(contacts, "b2b_register")
    changed = await contacts.http.patch("/me", headers=subject(pid), json={"title": "CEO"})
    assert changed.status_code == 200, changed.text
    export = (await export_of(contacts, pid, OWNER)).json()
    jsonschema.validate(export, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert [(r["field"], r["value"], r["source"]) for r in export["provided"]] == [("title", "CEO", "self_service")]


async def test_zip_export_holds_the_same_content_as_csv(contacts, consent):
    pid = await person(contacts, "person_web")
    resp = await export_of(contacts, pid, OWNER, format="zip")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    assert set(archive.namelist()) == {"provided.csv", "account.csv", "consents.csv", "marketing_choices.csv",
                                       "about.csv"}
    rows = list(csv.DictReader(io.StringIO(archive.read("provided.csv").decode())))
    assert {r["field"]: r["value"] for r in rows}["last_name"] == "Korhonen"
    consents = list(csv.DictReader(io.StringIO(archive.read("consents.csv").decode())))
    assert {"kind": "legal_basis", "value": "customer_relationship"} in consents


@pytest.mark.parametrize("who", ["user", "other_subject"])
async def test_export_is_for_the_person_and_the_register_owner_only(contacts, consent, who):
    pid = await person(contacts, "person_meeting")
    if who == "user":
        assert (await contacts.http.post(f"/persons/{pid}/export", headers=USER)).status_code == 403
    else:
        other = await person(contacts, "person_meeting")
        own = (await export_of(contacts, other, subject(other), own=True)).json()
        assert own["person_id"] == other
        theirs = await ask(contacts, pid, OWNER, own=False)
        assert (await contacts.http.get(f"/exports/{theirs}", headers=subject(other))).status_code == 404
    assert (await contacts.http.post(f"/persons/{uuid.uuid4()}/export", headers=OWNER)).status_code == 404
