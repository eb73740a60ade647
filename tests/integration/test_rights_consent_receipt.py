"""Proof of consent (SPEC §10) on the real database: a notice text is stored once under its
SHA-256; every recorded permission or ban yields a consent receipt in the Kantara / ISO/IEC
TS 27560 shape, valid against docs/schemas/consent-receipt.schema.json, naming the notice
version and its digest, the method, who recorded it and when."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.helpers import auth

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas"
                     / "consent-receipt.schema.json").read_text())
OWNER = auth("register_owner", "owner-27560")
STAFF = auth("register_user", "staff-27560")


@pytest.fixture
async def consent(start_service):
    return await start_service("consent")


def subject(pid: uuid.UUID) -> dict[str, str]:
    return auth("subject", f"person:{pid}", person_id=pid)


async def publish(consent, version: str, text: str) -> dict:
    resp = await consent.http.post("/notices", headers=OWNER, json={"version": version, "text": text})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_receipt_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


async def test_a_notice_text_is_stored_once_under_its_sha256(consent):
    text = f"Tietosuojaseloste {uuid.uuid4()}"
    first = await publish(consent, f"v-{uuid.uuid4().hex[:8]}", text)
    second = await publish(consent, f"v-{uuid.uuid4().hex[:8]}", text)
    assert first["sha256"] == second["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    stored = await consent.runtime.pool.fetchval("SELECT count(*) FROM notice_texts WHERE sha256 = $1", first["sha256"])
    assert stored == 1
    read = (await consent.http.get(f"/notices/{first['version']}")).json()
    assert read["text"] == text
    clash = await consent.http.post("/notices", headers=OWNER, json={"version": first["version"], "text": "other"})
    assert clash.status_code == 409 and "version" in clash.json()["fields"]


async def test_a_self_service_permission_has_a_valid_receipt_naming_the_notice(consent):
    notice = await publish(consent, f"v-{uuid.uuid4().hex[:8]}", f"Notice {uuid.uuid4()}")
    pid = uuid.uuid4()
    resp = await consent.http.post("/me/consents", headers=subject(pid), json={
        "purpose": "direct_advertising", "channel": "email", "decision": "grant", "method": "web_form",
        "notice_version": notice["version"]})
    assert resp.status_code == 200, resp.text
    records = (await consent.http.get(f"/persons/{pid}/consent-records", headers=subject(pid))).json()["records"]
    [record] = records
    receipt = await consent.http.get(f"/persons/{pid}/consents/{record['id']}/receipt", headers=subject(pid))
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert body["notice"] == {"version": notice["version"], "sha256": notice["sha256"]}
    assert body["granted"] and body["decision"] == "granted" and body["collectionMethod"] == "web_form"
    assert body["recordedBy"] == f"person:{pid}" and body["source"] == "self_service"
    assert body["services"][0]["purposes"][0]["purpose"] == "direct_advertising"


async def test_a_ban_recorded_by_staff_has_a_receipt_and_others_cannot_read_it(consent):
    pid = uuid.uuid4()
    resp = await consent.http.post(f"/persons/{pid}/consents", headers=STAFF, json={
        "purpose": "distance_selling", "channel": "phone", "decision": "ban", "method": "phone_call"})
    assert resp.status_code == 200, resp.text
    [record] = (await consent.http.get(f"/persons/{pid}/consent-records", headers=STAFF)).json()["records"]
    body = (await consent.http.get(f"/persons/{pid}/consents/{record['id']}/receipt", headers=STAFF)).json()
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert body["decision"] == "banned" and not body["granted"] and body["notice"] is None
    other = await consent.http.get(f"/persons/{pid}/consents/{record['id']}/receipt", headers=subject(uuid.uuid4()))
    assert other.status_code == 403
    missing = await consent.http.get(f"/persons/{pid}/consents/999999999/receipt", headers=STAFF)
    assert missing.status_code == 404


async def test_a_self_service_change_records_the_client_network_behind_the_trusted_proxy(consent):
    """SPEC §10 proof, §9 minimise (issue 14): the address is the one the HTTP server gives after
    its trusted-proxy rule (uvicorn's forwarded_allow_ips, HTTP_FORWARDED_ALLOW_IPS), and only its
    network is kept; a change recorded by staff has none."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    behind_proxy = ProxyHeadersMiddleware(consent.app, trusted_hosts="127.0.0.1")
    pid = uuid.uuid4()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=behind_proxy, client=("127.0.0.1", 40000)),
                                 base_url="http://consent") as http:
        resp = await http.post("/me/consents", headers={**subject(pid), "X-Forwarded-For": "203.0.113.77"}, json={
            "purpose": "opinion_and_market_research", "channel": "email", "decision": "ban", "method": "web_form"})
        assert resp.status_code == 200, resp.text
    staff = await consent.http.post(f"/persons/{pid}/consents", headers=STAFF, json={
        "purpose": "distance_selling", "channel": "email", "decision": "ban", "method": "phone_call"})
    assert staff.status_code == 200, staff.text
    records = (await consent.http.get(f"/persons/{pid}/consent-records", headers=STAFF)).json()["records"]
    receipts = {r["purpose"]: (await consent.http.get(f"/persons/{pid}/consents/{r['id']}/receipt",
                                                       headers=subject(pid))).json() for r in records}
    for body in receipts.values():
        jsonschema.validate(body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert receipts["opinion_and_market_research"]["clientNetwork"] == "203.0.113.0/24"
    assert receipts["distance_selling"]["clientNetwork"] is None
    stored = await consent.runtime.pool.fetchval(
        "SELECT count(*) FROM consent_history WHERE person_id = $1 AND client_network LIKE '%.77%'", pid)
    assert stored == 0  # the host address is never stored
