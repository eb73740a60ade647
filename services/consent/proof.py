"""Proof of consent (SPEC §10): the notice texts persons were shown, stored once under their
SHA-256, and a consent receipt for any recorded permission or ban in the Kantara Consent
Receipt v1.1 / ISO/IEC TS 27560 shape (schema: docs/schemas/consent-receipt.schema.json).

The evidence of each change (purpose, channel, method, who recorded it, when, the notice
version) is what consent_history already keeps; a receipt presents one row of it."""
from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.consent import storage
from services.consent.subjects import require_live
from services.consent.api import STAFF, Body, _own_or_staff
from shared.errors import Conflict, NotFound
from shared.web.auth import Principal, Role, write_audit
from shared.web.http import require, runtime_of
from shared.web.openapi import errors, with_example
from shared.web.paging import PageRequest, page, page_query
from services.consent.schemas import NOTICE_REQUEST, ConsentRecords, Notice, NoticeOut, Receipt
from pydantic import ConfigDict

router = APIRouter(tags=["consent proof"])
owner = require(Role.register_owner)
RECEIPT_VERSION = "KI-CR-v1.1.0"
JURISDICTION = "FI"
# What each marketing purpose is in the receipt's vocabulary (Kantara purposeCategory).
PURPOSE_CATEGORIES = {"direct_advertising": "Marketing", "distance_selling": "Marketing",
                      "other_direct_marketing": "Marketing", "opinion_and_market_research": "Research"}


class Controller(BaseSettings):
    """The controller, from the same CONTROLLER_* variables contacts reads for the Art. 30 record."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)
    controller_name: str = "Example ICT Oy"
    controller_address: str = "Esimerkkikatu 1, 00100 Helsinki"
    controller_contact: str = "tietosuoja@example.fi"
    controller_privacy_notice_url: str = "https://example.fi/tietosuoja"


class NoticeIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(NOTICE_REQUEST))

    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] = "fi"
    text: Annotated[str, StringConstraints(min_length=1, max_length=200_000)]


def notice_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def receipt(row: dict[str, Any], notice: dict[str, Any] | None, controller: Controller) -> dict[str, Any]:
    """One history row as a consent receipt (pure)."""
    granted = row["change"] in ("granted", "ban_lifted")
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": JURISDICTION,
        "consentTimestamp": int(row["recorded_at"].timestamp()),
        "collectionMethod": row["method"],
        "consentReceiptID": f"{row['person_id']}:{row['id']}",
        "language": notice["language"] if notice else "fi",
        "piiPrincipalId": str(row["person_id"]),
        "piiControllers": [{"piiController": controller.controller_name, "contact": controller.controller_contact,
                            "address": controller.controller_address, "email": controller.controller_contact,
                            "onBehalf": False}],
        "policyUrl": controller.controller_privacy_notice_url,
        "services": [{"service": f"marketing by {row['channel']}", "purposes": [{
            "purpose": row["purpose"], "purposeCategory": [PURPOSE_CATEGORIES.get(row["purpose"], "Marketing")],
            "consentType": "EXPLICIT", "piiCategory": ["Contact details"], "primaryPurpose": True,
            "termination": "until withdrawn by the person", "thirdPartyDisclosure": False}]}],
        "sensitive": False,
        "spiCat": [],
        # ISO/IEC TS 27560 record fields the Kantara shape has no place for.
        "decision": row["change"], "granted": granted, "channel": row["channel"], "source": row["source"],
        "recordedBy": row["actor"],
        # SPEC §10: a self-service change's client network, minimised (IPv4 /24, IPv6 /48; SPEC §9).
        "clientNetwork": row.get("client_network"),
        "notice": None if row["notice_version"] is None else {
            "version": row["notice_version"], "sha256": notice["sha256"] if notice else None},
    }


@router.post("/notices", status_code=201, response_model=NoticeOut, responses=errors(409))
async def publish_notice(body: NoticeIn, request: Request, who: Principal = Depends(owner)) -> dict:
    """A notice version and its text; the same text under two versions is stored once."""
    digest = notice_digest(body.text)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow("SELECT sha256 FROM notice_versions WHERE version = $1", body.version)
        if existing is not None and existing["sha256"] != digest:
            raise Conflict("this notice version already names another text", fields={"version": "already published"})
        await conn.execute("INSERT INTO notice_texts (sha256, text) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           digest, body.text)
        await conn.execute("INSERT INTO notice_versions (version, sha256, language, published_by)"
                           " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           body.version, digest, body.language, who.user)
        await write_audit(conn, who, "notice.publish", target=f"notice:{body.version}")
    return {"version": body.version, "sha256": digest, "language": body.language}


@router.get("/notices/{version}", response_model=Notice, responses=errors(404))
async def read_notice(version: str, request: Request) -> dict:
    """The text a person was shown, by its version (public: a notice is public)."""
    row = await runtime_of(request).pool.fetchrow(
        "SELECT v.version, v.sha256, v.language, v.published_at, t.text FROM notice_versions v"
        " JOIN notice_texts t USING (sha256) WHERE v.version = $1", version)
    if row is None:
        raise NotFound("no such notice version")
    return dict(row)


@router.get("/persons/{person_id}/consent-records", response_model=ConsentRecords, responses=errors(404))
async def consent_records(person_id: uuid.UUID, request: Request, paging: PageRequest = Depends(page_query(100, 1000)),
                          who: Principal = Depends(require_live(*STAFF, Role.subject))) -> dict:
    """The ids of a person's recorded permissions and bans, for their receipts; a page at a time by id (issue 20)."""
    await _own_or_staff(request, who, person_id, "consent.read")
    after = paging.after(int)
    rows = await runtime_of(request).pool.fetch(
        "SELECT id, purpose, channel, change, notice_version, recorded_at FROM consent_history"
        " WHERE person_id = $1 AND id > $2 ORDER BY id LIMIT $3", person_id, after[0] if after else 0,
        paging.limit + 1)
    rows, next_cursor = page(rows, paging.limit, lambda r: (r["id"],))
    return {"person_id": person_id, "records": [dict(r) for r in rows], "next": next_cursor}


@router.get("/persons/{person_id}/consents/{consent_id}/receipt", response_model=Receipt, responses=errors(404))
async def consent_receipt(person_id: uuid.UUID, request: Request,
                          consent_id: Annotated[int, Path(ge=1, le=2 ** 63 - 1)],
                          who: Principal = Depends(require_live(*STAFF, Role.subject))) -> dict:
    await _own_or_staff(request, who, person_id, "consent.read")
    pool = runtime_of(request).pool
    if await storage.is_erased(pool, person_id):
        raise NotFound("no consent data for this person")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM consent_history WHERE id = $1 AND person_id = $2",
                                  consent_id, person_id)
        if row is None:
            raise NotFound("no such consent record")
        notice = None
        if row["notice_version"] is not None:
            notice = await conn.fetchrow("SELECT sha256, language FROM notice_versions WHERE version = $1",
                                         row["notice_version"])
        await write_audit(conn, who, "consent.receipt", person_id=person_id, target=f"consent:{consent_id}")
    return receipt(dict(row), dict(notice) if notice else None, Controller())
