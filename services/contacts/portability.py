"""Data portability (GDPR Art. 20, SPEC §10): what the person provided to contacts, and the
marketing permissions and bans they gave consent, as JSON (schema:
docs/schemas/portability-export.schema.json) or as CSV files in a zip. Every export is
audit-logged (R10).

Consent's part is gathered the way the access report gathers the other services' (issue 14):
asking for an export records it and publishes `access-requested` with purpose `portability`
naming consent alone; consent answers on `access-report-part`; the export can be read once
every part is in (409 naming the missing service, and whether it is late, until then).
"""
from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response

from services.contacts import access_report, storage
from services.contacts.domain import PERSON_FIELDS
from services.contacts.settings import contacts_settings
from shared.errors import Conflict, NotFound, Rejected
from shared.logging import get_logger
from shared.messaging.handling import EventContext
from shared.messaging.envelope import utcnow
from shared.messaging.events import AccessReportPart, AccessRequested, DataSource
from shared.web.auth import Principal, Role, write_audit
from services.contacts import answers
from shared.web.openapi import errors, media
from shared.web.http import require, runtime_of

log = get_logger(__name__)
router = APIRouter(tags=["portability"])
owner = require(Role.register_owner)
subject = require(Role.subject)
owner_or_subject = require(Role.register_owner, Role.subject)
FORMAT = "rekisteri-portability-export"
SCHEMA_VERSION = 2  # 2: marketing_choices from consent (issue 14)
# R4 sources that are the person themself: what Art. 20 calls data "provided by" them.
PROVIDED_BY_PERSON = frozenset({DataSource.person_meeting, DataSource.person_phone, DataSource.person_web,
                                DataSource.person_email, DataSource.self_service})
# The services whose part a portability export waits for (consumers of `access-requested`).
PORTABILITY_SERVICES = ("consent",)
LIMITS = ["Marketing permissions and bans are as the consent service holds them (marketing_choices, with the "
          "notice version seen); marketing_bans are those the register of contacts applies.",
          "Data received from other sources (B2B, public or private registers, staff) is not 'provided' "
          "(Art. 20) and is in the access report instead."]


# ---- pure: what goes into the export ------------------------------------------------------

def marketing_choices(parts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Consent's permissions (`granted`) and bans (`banned`) per purpose and channel, from its part."""
    return [{"status": i["value"], "purpose": i["purpose"], "channel": i["channel"], "source": i["source"],
             "method": i.get("method"), "notice_version": i.get("notice_version"), "recorded_at": i["recorded_at"]}
            for i in parts.get("consent", []) if i.get("type") == "consent_state"]


def build(everything: dict[str, Any], now: datetime, parts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    person, sources = everything["person"], everything["field_sources"]
    provided = []
    for name in PERSON_FIELDS:
        origin = sources.get(name)
        if origin is None or origin["source"] not in PROVIDED_BY_PERSON or name == "organisation_id":
            continue
        value = person.get(name)
        if value in (None, [], {}, ""):
            continue
        provided.append({"field": name, "value": value, "source": origin["source"],
                         "recorded_at": origin["recorded_at"]})
    org = everything.get("organisation")
    if org is not None and sources.get("organisation_id", {}).get("source") in PROVIDED_BY_PERSON:
        provided.append({"field": "organisation", "value": org["name"],
                         "source": sources["organisation_id"]["source"],
                         "recorded_at": sources["organisation_id"]["recorded_at"]})
    account = everything.get("account")
    return jsonable_encoder({
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "exported_at": now, "person_id": person["id"],
        "provided": provided,
        "account": None if account is None else {
            "username": account["username"], "nickname": account["nickname"],
            "identifiers": account["identifiers"] or {}, "created_at": account["created_at"]},
        "consents": {"legal_basis": person["legal_basis"], "purposes": list(person["purposes"]),
                     "marketing_bans": [{"purpose": p} for p in everything["marketing_bans"]],
                     "marketing_choices": marketing_choices(parts)},
        "limits": LIMITS,
    })


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def to_zip(export: dict[str, Any]) -> bytes:
    """One CSV per section (UTF-8, header row), the same content as the JSON."""
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {
        "provided.csv": (["field", "value", "source", "recorded_at"],
                         [[r["field"], _cell(r["value"]), r["source"], r["recorded_at"]] for r in export["provided"]]),
        "account.csv": (["username", "nickname", "identifiers", "created_at"],
                        [] if export["account"] is None else [[
                            export["account"]["username"], export["account"]["nickname"] or "",
                            _cell(export["account"]["identifiers"]), export["account"]["created_at"]]]),
        "consents.csv": (["kind", "value"],
                         [["legal_basis", export["consents"]["legal_basis"]],
                          *[["purpose", p] for p in export["consents"]["purposes"]],
                          *[["marketing_ban", b["purpose"]] for b in export["consents"]["marketing_bans"]]]),
        "marketing_choices.csv": (["status", "purpose", "channel", "source", "method", "notice_version", "recorded_at"],
                                  [[c["status"], c["purpose"], c["channel"], c["source"], c["method"] or "",
                                    c["notice_version"] or "", c["recorded_at"]]
                                   for c in export["consents"]["marketing_choices"]]),
        "about.csv": (["key", "value"], [["format", export["format"]], ["schema_version", export["schema_version"]],
                                         ["exported_at", export["exported_at"]], ["person_id", export["person_id"]],
                                         *[["limit", text] for text in export["limits"]]]),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (header, rows) in tables.items():
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(header)
            writer.writerows(rows)
            archive.writestr(name, text.getvalue())
    return buffer.getvalue()


# ---- routes ----------------------------------------------------------------------------

def describe(export: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """The export's state: which services' parts are in, which are missing and whether late."""
    state = access_report.progress(export["expected_services"], list(export["parts"]), export["created_at"],
                                   utcnow(), timeout_s)
    return {"id": export["id"], "person_id": export["person_id"], "created_at": export["created_at"],
            "ready_at": export["ready_at"], "status": "ready" if export["ready_at"] else "collecting",
            "expected": list(export["expected_services"]), **state}


async def _ask(request: Request, who: Principal, person_id: uuid.UUID) -> dict:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        if await storage.get_person(conn, person_id) is None:
            raise NotFound("no such person")
        export = await storage.insert_portability_export(conn, uuid.uuid4(), person_id, who.user,
                                                         list(PORTABILITY_SERVICES))
        await runtime.unit_of_work(conn).outbox.add(AccessRequested(
            request_id=export["id"], person_id=person_id, purpose="portability", services=list(PORTABILITY_SERVICES)))
        await write_audit(conn, who, "portability.request", person_id=person_id, target=f"export:{export['id']}")
        return describe(export, contacts_settings(runtime).contacts_access_report_timeout_s)


async def _export(request: Request, who: Principal, export_id: uuid.UUID, fmt: str) -> dict | Response:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await storage.get_portability_export(conn, export_id)
        if row is None or (who.role is Role.subject and row["person_id"] != who.person_id):
            raise NotFound("no such export")
        if row["ready_at"] is None:
            state = describe(row, contacts_settings(runtime).contacts_access_report_timeout_s)
            raise Conflict("the export is not assembled: status collecting",
                           fields={"status": "collecting", "missing": ",".join(state["missing"]),
                                   "late": ",".join(state["late_services"])})
        everything = await storage.person_everything(conn, row["person_id"])
        if everything is None:
            raise NotFound("no such person")
        export = build(everything, utcnow(), row["parts"])
        await write_audit(conn, who, "portability.export", person_id=row["person_id"], target=f"export:{export_id}",
                          details={"format": fmt})
    if fmt == "zip":
        return Response(to_zip(export), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="export-{row["person_id"]}.zip"'})
    return export


async def on_portability_part(ctx: EventContext[AccessReportPart]) -> None:
    """Keep consent's part of an export; an export gone with its erased person needs nothing."""
    p = ctx.payload
    export = await ctx.store.get_portability_export(p.request_id, for_update=True)
    if export is None:
        log.info("portability_part_without_export", request_id=str(p.request_id), service=p.service)
        return
    if p.service not in export["expected_services"]:
        raise Rejected("service: not asked to answer this portability export")
    if await ctx.store.store_portability_part(p.request_id, p.service, p.items):
        log.info("portability_part_stored", request_id=str(p.request_id), service=p.service)


@router.post("/me/export", status_code=201, response_model=answers.ExportRequest, responses=errors(404))
async def export_own(request: Request, who: Principal = Depends(subject)) -> dict:
    """Art. 20: the signed-in person asks for their own data; read it at `GET /exports/{id}`."""
    assert who.person_id is not None  # a subject token always names its person
    return await _ask(request, who, who.person_id)


@router.post("/persons/{person_id}/export", status_code=201, response_model=answers.ExportRequest,
             responses=errors(404))
async def export_person(person_id: uuid.UUID, request: Request, who: Principal = Depends(owner)) -> dict:
    """Art. 20 on the person's behalf (a request by letter or in person): the register owner."""
    return await _ask(request, who, person_id)


@router.get("/exports/{export_id}",
            response_model=answers.Export, responses=errors(404, 409) | {200: media({"application/zip": None})})
async def read_export(export_id: uuid.UUID, request: Request, who: Principal = Depends(owner_or_subject),
                      format: Literal["json", "zip"] = Query("json")) -> dict | Response:
    """The export as JSON or CSV files in a zip once every part is in; 409 naming the missing one.
    Not paged: one person's export (Art. 20) is a document, given whole (issue 20)."""
    return await _export(request, who, export_id, format)
