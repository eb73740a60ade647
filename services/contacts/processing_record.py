"""The record of processing activities (GDPR Art. 30, SPEC §10), generated on every request
from what the register actually is: the controller from settings, purposes and legal bases
from the event enums, data categories from the live database catalogue of contacts' own
tables and from the topic catalogue for the other services, sources from R4's enum, the
processors the owner manages, the one transfer (the marketing register, R9), the retention
settings in force and the security measures' configured values. No hand-written text that
can drift: each value below is read from code or configuration.

The other services' tables are not read: each service owns its schema (SPEC §3), so their
categories are the personal fields of the topics they consume and publish.
"""
from __future__ import annotations

from html import escape
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contacts import identity_codes, processors
from services.contacts.deadlines import ANSWER_MONTHS, MAX_EXTENSION_MONTHS
from services.contacts.domain import (FIRST_LOCKOUT, LONGEST_LOCKOUT, MARKETING_FIELDS, MAX_FAILED_LOGINS,
                                      PERSON_FIELDS, SECTION_PURPOSES)
from services.contacts.settings import ContactsSettings, contacts_settings
from shared.messaging import events as ev
from shared.messaging.envelope import utcnow
from shared.messaging.topics import CATALOGUE, EXTERNAL
from shared.web.auth import Principal, Role, write_audit
from services.contacts import answers
from shared.web.openapi import media
from shared.web.http import require, runtime_of

router = APIRouter(tags=["record of processing"])
R7_MAX_DISPOSITION_DAYS = 365  # SPEC R7: at the latest a year after the last assignment
owner = require(Role.register_owner)

# R1/R2: which legal bases each purpose rests on (a person's recorded basis is one of these).
PURPOSE_BASES: dict[ev.ProcessingPurpose, tuple[ev.LegalBasis, ...]] = {
    ev.ProcessingPurpose.customer_relationship: (ev.LegalBasis.customer_relationship,
                                                 ev.LegalBasis.legitimate_connection, ev.LegalBasis.consent),
    ev.ProcessingPurpose.assignments: (ev.LegalBasis.assignment, ev.LegalBasis.customer_relationship),
    ev.ProcessingPurpose.usage_billing: (ev.LegalBasis.customer_relationship,),
}
PURPOSE_CODES = {ev.ProcessingPurpose.customer_relationship: "P1", ev.ProcessingPurpose.assignments: "P2",
                 ev.ProcessingPurpose.usage_billing: "P3"}

# Each of contacts' tables, the data category it holds (R3) and its purposes (R1). A table
# missing here shows as `uncategorised` (a test fails): a new table cannot slip past the record.
TABLE_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "persons": ("basic_data", ("customer_relationship", "assignments")),
    "field_sources": ("sources_of_data", ("customer_relationship",)),
    "organisations": ("employer_organisation", tuple(SECTION_PURPOSES["organisation"])),
    "accounts": ("registration_data", tuple(SECTION_PURPOSES["account"])),
    "relationships": ("relationship_data", tuple(SECTION_PURPOSES["relationships"])),
    "assignments": ("assignment_data", tuple(SECTION_PURPOSES["assignments"])),
    "assignment_participants": ("assignment_data", tuple(SECTION_PURPOSES["assignments"])),
    "service_records": ("service_use_data", ("customer_relationship", "usage_billing")),
    "marketing_bans": ("marketing_bans", tuple(SECTION_PURPOSES["marketing_bans"])),
    "suppressed_contact_points": ("suppression_records", ("suppression",)),
    # the privacy kernel's bookkeeping: which key chains digests are stored under (no values)
    "suppression_key_chain": ("technical", ()),
    "suppression_redigest": ("suppression_records", ("suppression",)),
    "rectifications": ("data_subject_requests", tuple(SECTION_PURPOSES["rectifications"])),
    "access_requests": ("data_subject_requests", ("access_request",)),
    "access_report_parts": ("data_subject_requests", ("access_request",)),
    "rights_requests": ("data_subject_requests", ("access_request",)),
    "rights_request_pauses": ("data_subject_requests", ("access_request",)),
    "identity_codes": ("data_subject_requests", ("access_request",)),
    "subject_requests": ("data_subject_requests", ("access_request",)),  # objections, erasure requests
    "portability_exports": ("data_subject_requests", ("access_request",)),  # Art. 20, consent's part
    "erased_persons": ("erasure_evidence", ("erasure",)),
    "processors": ("controller_records", ()),
    "audit_log": ("audit_trail", ("security",)),
    "outbox": ("messaging_copies", ("delivery",)),
    "inbox": ("messaging_copies", ("delivery",)),
    "dead_letters": ("messaging_copies", ("delivery",)),
    "broker_state": ("technical", ()),
    "schema_migrations": ("technical", ()),
}

LABELS = {
    "fi": {"title": "Seloste käsittelytoimista (GDPR 30 art.)", "controller": "Rekisterinpitäjä ja edustaja",
           "purposes": "Käsittelyn tarkoitukset ja oikeusperusteet", "categories": "Henkilötietoryhmät",
           "other_services": "Muiden palvelujen henkilötiedot (tapahtumaluettelosta)", "sources": "Tietolähteet",
           "recipients": "Vastaanottajat", "processors": "Käsittelijät (alihankkijat)", "transfers": "Siirrot",
           "retention": "Säilytysajat", "security": "Turvatoimet", "generated_at": "Laadittu",
           "none": "ei yhtään"},
    "en": {"title": "Record of processing activities (GDPR Art. 30)", "controller": "Controller and representative",
           "purposes": "Purposes and legal bases", "categories": "Categories of personal data",
           "other_services": "Personal data of the other services (from the topic catalogue)", "sources": "Sources",
           "recipients": "Recipients", "processors": "Processors", "transfers": "Transfers",
           "retention": "Retention", "security": "Security measures", "generated_at": "Generated at",
           "none": "none"},
}


class RetentionRules(BaseSettings):
    """RETENTION_GRACE_DAYS and RETENTION_DISPOSITION_DAYS read from the environment exactly as the
    retention service reads them (its defaults), at every request: the record shows what is in force."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)
    # Retention's variables with retention's defaults (services never import each other).
    retention_grace_days: int = 0
    retention_disposition_days: int = R7_MAX_DISPOSITION_DAYS


async def stored_columns(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, list[str]]:
    """Every base table of contacts' schema and its columns, from the database catalogue."""
    rows = await conn.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position")
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["table_name"], []).append(r["column_name"])
    return out


def _payload_fields(payload: type[ev.Payload]) -> list[str]:
    return list(payload.model_fields)


def build(settings: ContactsSettings, retention: RetentionRules, columns: dict[str, list[str]],
          processor_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The record as data (pure)."""
    return jsonable_encoder({
        "generated_at": utcnow(),
        "controller": {"name": settings.controller_name, "business_id": settings.controller_business_id,
                       "address": settings.controller_address, "contact": settings.controller_contact,
                       "representative": settings.controller_representative,
                       "representative_contact": settings.controller_representative_contact},
        "purposes": [{"code": PURPOSE_CODES[p], "purpose": p.value, "legal_bases": [b.value for b in PURPOSE_BASES[p]]}
                     for p in ev.ProcessingPurpose],
        "legal_bases": [b.value for b in ev.LegalBasis],
        "marketing_purposes": [p.value for p in ev.Purpose],
        "data_categories": _data_categories(columns),
        "person_fields": list(PERSON_FIELDS),
        "other_services": _other_services(),
        "sources": [s.value for s in ev.DataSource],
        "recipients": {"third_parties": [], "company_systems_topics": sorted(
            t.name for t in CATALOGUE.values() if t.personal_data and EXTERNAL in t.consumers)},
        "processors": [{k: p[k] for k in ("name", "business_id", "service", "purposes", "location",
                                          "agreement_date", "outside_eea")} for p in processor_rows],
        "transfers": {"marketing_register": {"fields": list(MARKETING_FIELDS), "state": "marketing"},
                      "third_countries": [p["name"] for p in processor_rows if p["outside_eea"]]},
        "retention": _retention(settings, retention),
        "security": _security(settings),
    })


def _data_categories(columns: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every stored column under its category, with the purposes it serves."""
    categories: dict[str, dict[str, Any]] = {}
    for table, cols in columns.items():
        category, purposes = TABLE_CATEGORIES.get(table, ("uncategorised", ()))
        entry = categories.setdefault(category, {"category": category, "tables": [], "purposes": set()})
        entry["tables"].append({"table": table, "fields": cols})
        entry["purposes"].update(purposes)
    return [{**c, "purposes": sorted(c["purposes"])} for c in categories.values()]


def _other_services() -> dict[str, dict[str, list[str]]]:
    """The register's other services and the personal fields each receives, by topic."""
    found: dict[str, dict[str, list[str]]] = {}
    for t in CATALOGUE.values():
        if not t.personal_data:
            continue
        for service in {*t.producers, *t.consumers} - {"contacts", EXTERNAL, "launcher"}:
            found.setdefault(service, {})[t.name] = _payload_fields(t.payload)
    return found


def _retention(settings: ContactsSettings, retention: RetentionRules) -> dict[str, Any]:
    return {
        "passivation_grace_days": retention.retention_grace_days,
        "disposition_days_after_last_assignment": retention.retention_disposition_days,
        "disposition_days_max": R7_MAX_DISPOSITION_DAYS,
        "ban_suppression": "kept after erasure (R8)",
        "outbox_retention_days": settings.outbox_retention_days,
        "topic_retention_days": {t.name: t.retention_ms / 86_400_000 for t in CATALOGUE.values() if t.personal_data},
        "request_answer_months": ANSWER_MONTHS, "request_extension_months_max": MAX_EXTENSION_MONTHS,
    }


def _security(settings: ContactsSettings) -> dict[str, Any]:
    """Art. 32 measures as the code applies them (SPEC §9)."""
    return {
        "roles": [r.value for r in Role],
        "passive_data_readable_by": [Role.register_owner.value],
        "audit_log": "every read and change of personal data by staff (R10)",
        "password_hash": {"algorithm": "argon2id", "time_cost": settings.argon2_time_cost,
                          "memory_kib": settings.argon2_memory_kib, "parallelism": settings.argon2_parallelism},
        "login_lockout": {"failed_attempts": MAX_FAILED_LOGINS, "first_minutes": FIRST_LOCKOUT.total_seconds() / 60,
                          "longest_minutes": LONGEST_LOCKOUT.total_seconds() / 60},
        "token_ttl_s": settings.rekisteri_token_ttl_s,
        "identity_codes": {"lifetime_minutes": identity_codes.LIFETIME.total_seconds() / 60,
                           "tries": identity_codes.TRIES, "stored_as": "salted sha256"},
        "banned_contact_points_stored_as": "HMAC-SHA256 keyed digest (REKISTERI_SUPPRESSION_KEY)",
        "personal_fields_on_topics_and_outbox": "sealed with AES-256-GCM under the person's data key,"
                                                " destroyed at erasure (crypto-shredding)",
    }


def render_html(record: dict[str, Any], lang: str) -> str:
    t = LABELS[lang]

    def block(value: Any) -> str:
        if isinstance(value, dict):
            return "<dl>" + "".join(f"<dt>{escape(str(k))}</dt><dd>{block(v)}</dd>" for k, v in value.items()) + "</dl>"
        if isinstance(value, list):
            if not value:
                return f"<p>{escape(t['none'])}</p>"
            return "<ul>" + "".join(f"<li>{block(v)}</li>" for v in value) + "</ul>"
        return escape("" if value is None else str(value))

    sections = [("controller", "controller"), ("purposes", "purposes"), ("categories", "data_categories"),
                ("other_services", "other_services"), ("sources", "sources"), ("recipients", "recipients"),
                ("processors", "processors"), ("transfers", "transfers"), ("retention", "retention"),
                ("security", "security")]
    body = [f"<h1>{escape(t['title'])}</h1><p>{escape(t['generated_at'])}: {escape(record['generated_at'])}</p>"]
    body += [f"<h2>{escape(t[label])}</h2>{block(record[key])}" for label, key in sections]
    return (f"<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{escape(t['title'])}</title>"
            "</head><body>" + "".join(body) + "</body></html>")


@router.get("/processing-record",
            response_model=answers.ProcessingRecord, responses={200: media({"text/html": "<!doctype html><html lang=\"fi\">...</html>"})})
async def processing_record(request: Request, who: Principal = Depends(owner),
                            format: Literal["json", "html"] = Query("json"),
                            lang: Literal["fi", "en"] = Query("fi")) -> dict | HTMLResponse:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        record = build(contacts_settings(runtime), RetentionRules(), await stored_columns(conn),
                       await processors.all_processors(conn))
        await write_audit(conn, who, "processing_record.read", details={"format": format})
    if format == "html":
        return HTMLResponse(render_html(record, lang))
    return record
