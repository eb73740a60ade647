"""Data portability (GDPR Art. 20, SPEC §10): what the person provided to contacts and the
marketing choices contacts knows of, as JSON (schema: docs/schemas/portability-export.schema.json)
or as CSV files in a zip. Every export is audit-logged (R10).

Limit: marketing permissions, and the notice text the person saw, are held by the consent
service; contacts knows only the bans it mirrors (`marketing_bans`). The export says so in
`limits` instead of calling consent synchronously (services talk through events, SPEC §4).
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

from services.contacts import storage
from services.contacts.domain import PERSON_FIELDS
from shared.errors import NotFound
from shared.messaging.envelope import utcnow
from shared.messaging.events import DataSource
from shared.web.auth import Principal, Role, write_audit
from shared.web.http import require, runtime_of

router = APIRouter(tags=["portability"])
owner = require(Role.register_owner)
subject = require(Role.subject)
FORMAT = "rekisteri-portability-export"
SCHEMA_VERSION = 1
# R4 sources that are the person themself: what Art. 20 calls data "provided by" them.
PROVIDED_BY_PERSON = frozenset({DataSource.person_meeting, DataSource.person_phone, DataSource.person_web,
                                DataSource.person_email, DataSource.self_service})
LIMITS = ["Marketing permissions and the notice version seen are held by the consent service and are not in "
          "this export; ask for them there (consent GET /me/consents). The bans listed are those the register "
          "of contacts applies.",
          "Data received from other sources (B2B, public or private registers, staff) is not 'provided' "
          "(Art. 20) and is in the access report instead."]


# ---- pure: what goes into the export ------------------------------------------------------

def build(everything: dict[str, Any], now: datetime) -> dict[str, Any]:
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
                     "marketing_bans": [{"purpose": p} for p in everything["marketing_bans"]]},
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

async def _export(request: Request, who: Principal, person_id: uuid.UUID, fmt: str) -> dict | Response:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        everything = await storage.person_everything(conn, person_id)
        if everything is None:
            raise NotFound("no such person")
        export = build(everything, utcnow())
        await write_audit(conn, who, "portability.export", person_id=person_id, target=f"person:{person_id}",
                          details={"format": fmt})
    if fmt == "zip":
        return Response(to_zip(export), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="export-{person_id}.zip"'})
    return export


@router.get("/me/export", response_model=None)
async def export_own(request: Request, who: Principal = Depends(subject),
                     format: Literal["json", "zip"] = Query("json")) -> dict | Response:
    """Art. 20: the signed-in person's own data, as JSON or CSV files in a zip."""
    return await _export(request, who, who.person_id, format)


@router.get("/persons/{person_id}/export", response_model=None)
async def export_person(person_id: uuid.UUID, request: Request, who: Principal = Depends(owner),
                        format: Literal["json", "zip"] = Query("json")) -> dict | Response:
    """Art. 20 on the person's behalf (a request by letter or in person): the register owner."""
    return await _export(request, who, person_id, format)
