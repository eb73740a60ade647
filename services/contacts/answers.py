"""The contacts service's HTTP answers as models, each with an example (issue 17).

Person-shaped answers name their identifying fields and allow the rest (the full record of
R3/R4 with sources and connections is long and grows with the register); lists and small
answers are complete."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import ConfigDict, create_model

from shared.web.openapi import with_example
from shared.web.paging import next_field

P = "0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b"
ORG = "7d2e9f10-4b3a-4c5d-8e6f-a1b2c3d4e5f6"
REQ = "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d"
AT = "2025-03-01T10:00:00+00:00"
PERSON = {"id": P, "first_name": "Matti", "last_name": "Meikäläinen", "title": "CTO", "emails": ["matti@example.fi"],
          "phones": ["+358401234567"], "organisation_id": ORG, "lifecycle_state": "active", "created_at": AT}
ORGANISATION = {"id": ORG, "name": "Esimerkki Oy", "business_id": "1234567-1", "address": None, "phone": None}
ACCESS = {"id": REQ, "person_id": P, "channel": "staff", "verified_by": "owner", "chargeable": False,
          "status": "asked", "decision": None, "decision_reason": None, "decided_by": None, "decided_at": None,
          "created_at": AT, "asked_at": AT, "fulfilled_at": None, "chargeable_because": None,
          "expected": ["consent", "retention", "billing"], "answered": [], "missing": ["billing"], "late": False}
REQUEST = {"id": REQ, "kind": "access", "person_id": P, "status": "open", "received_on": "2025-03-01",
           "answer_by": "2025-04-01", "overdue": False}
PROCESSOR = {"id": 1, "name": "Pilvipalvelu Oy", "business_id": "7654321-4", "service": "hosting",
             "purposes": ["customer_relationship"], "location": "FI", "agreement_date": "2024-11-01",
             "created_at": AT, "updated_at": AT}


def answer(model_name: str, example: dict[str, Any], /, *, allow_more: bool = False, **fields: Any) -> Any:
    """A response model: `fields` as (type, default) pairs (a default of ... is required)."""
    config = ConfigDict(extra="allow" if allow_more else "ignore", json_schema_extra=with_example(example))
    return create_model(model_name, __config__=config, **fields)


Person = answer("Person", PERSON, allow_more=True, id=(uuid.UUID, ...), first_name=(str | None, None),
                last_name=(str | None, None), lifecycle_state=(str, ...))
PersonRecord = answer("PersonRecord", {"person": PERSON, "field_sources": {"title": {"source": "staff", "recorded_at": AT}},
                                       "organisation": ORGANISATION, "account": None, "relationships": [],
                                       "assignments": [], "service_records": [], "marketing_bans": [],
                                       "rectifications": [], "purposes": {"person": ["customer_relationship"]}},
                      allow_more=True, person=(Person, ...), field_sources=(dict[str, Any], ...))
Persons = answer("Persons", {"persons": [PERSON], "next": None}, persons=(list[Person], ...), next=(str | None, next_field()))  # type: ignore[valid-type]  # a model create_model made
Organisation = answer("Organisation", ORGANISATION, allow_more=True, id=(uuid.UUID, ...), name=(str, ...),
                      business_id=(str | None, None))
Created = answer("Created", {"id": 17}, id=(Any, ...))
Connection = answer("Connection", {"id": REQ, "person_id": P, "lifecycle_state": "active"}, id=(uuid.UUID, ...),
                    person_id=(uuid.UUID, ...), lifecycle_state=(str, ...))
Assignment = answer("Assignment", {"id": REQ, "given_by": "customer", "title": "Audit 2025", "participants": [
    {"person_id": P, "started_at": AT, "ended_at": None}]}, allow_more=True, participants=(list[dict[str, Any]], ...))
MarketingExport = answer("MarketingExport", {"purpose": "direct_advertising", "next": None, "persons": [
    {k: PERSON.get(k) for k in ("id", "first_name", "last_name", "title", "emails", "phones", "organisation_id",
                                "lifecycle_state")} | {"organisation_name": "Esimerkki Oy"}]},
                         purpose=(str | None, ...), next=(str | None, next_field()),
                         persons=(list[dict[str, Any]], ...))
PersonAudit = answer("PersonAudit", {"person_id": P, "entries": [
    {"at": AT, "actor": "owner", "role": "register_owner", "action": "person.read", "target": None,
     "outcome": "allowed", "details": {}}], "next": None}, person_id=(uuid.UUID, ...),
                     entries=(list[dict[str, Any]], ...), next=(str | None, next_field()))
AccountOpened = answer("AccountOpened", {"person_id": P, "username": "matti.m", "activation_code": "K7Q2-9XPM",
                                         "activation_expires_at": AT},
                       person_id=(uuid.UUID, ...), username=(str, ...), activation_code=(str, ...),
                       activation_expires_at=(datetime, ...))
AccountDisabled = answer("AccountDisabled", {"person_id": P, "disabled": True, "changed": True},
                         person_id=(uuid.UUID, ...), disabled=(bool, ...), changed=(bool, ...))
Activated = answer("Activated", {"person_id": P, "activated": True}, person_id=(uuid.UUID, ...),
                   activated=(bool, ...))
Token = answer("Token", {"token": "eyJhbGciOiJIUzI1NiJ9...", "token_type": "bearer", "person_id": P},
               token=(str, ...), token_type=(str, ...), person_id=(uuid.UUID, ...))
Changed = answer("Changed", {"person_id": P, "changed_fields": ["title"]}, person_id=(uuid.UUID, ...),
                 changed_fields=(list[str], ...))
Rectification = answer("Rectification", {"id": REQ, "person_id": P, "status": "pending"}, allow_more=True,
                       id=(uuid.UUID, ...), status=(str, ...))
Rectifications = answer("Rectifications", {"pending": [{"id": REQ, "person_id": P, "status": "pending",
                                                        "changes": {"title": "CEO"}, "reason": "title changed"}],
                                           "next": None},
                        pending=(list[dict[str, Any]], ...), next=(str | None, next_field()))
Decided = answer("Decided", {"id": REQ, "status": "approved", "changed_fields": ["title"]}, id=(uuid.UUID, ...),
                 status=(str, ...), changed_fields=(list[str], ...))
AccessRequest = answer("AccessRequest", ACCESS, allow_more=True, id=(uuid.UUID, ...), status=(str, ...))
AccessRequests = answer("AccessRequests", {"access_requests": [ACCESS], "next": None},
                        access_requests=(list[dict[str, Any]], ...), next=(str | None, next_field()))
AccessReport = answer("AccessReport", ACCESS | {"report": {"contacts": {"person": PERSON}}}, allow_more=True,
                      id=(uuid.UUID | None, None), status=(str | None, None))
DeadlineRequest = answer("DeadlineRequest", REQUEST, allow_more=True, id=(uuid.UUID, ...), status=(str, ...),
                         overdue=(bool, ...))
DeadlineRequests = answer("DeadlineRequests", {"requests": [REQUEST], "next": None},
                          requests=(list[dict[str, Any]], ...), next=(str | None, next_field()))
Extended = answer("Extended", REQUEST | {"notified": True}, allow_more=True, id=(uuid.UUID, ...),
                  notified=(bool, ...))
OverdueRequests = answer("OverdueRequests", {"as_of": "2025-04-02", "count": 1, "requests": [
    {"id": REQ, "kind": "access", "received_on": "2025-03-01", "answer_by": "2025-04-01", "days_overdue": 1}],
    "next": None}, as_of=(date, ...), count=(int, ...), requests=(list[dict[str, Any]], ...),
                         next=(str | None, next_field()))
CodeSent = answer("CodeSent", {"id": REQ, "expires_at": AT, "tries": 5}, id=(uuid.UUID, ...),
                  expires_at=(datetime, ...), tries=(int, ...))
Verified = answer("Verified", REQUEST | {"verified": True}, allow_more=True, id=(uuid.UUID | None, None))
Export = answer("Export", {"format": "rekisteri-portability-export", "schema_version": 2, "exported_at": AT, "person_id": P,
                          "provided": [{"field": "title", "value": "CTO", "source": "person_web",
                                        "recorded_at": AT}], "account": None}, allow_more=True,
                format=(str, ...), exported_at=(datetime, ...), person_id=(uuid.UUID, ...),
                provided=(list[dict[str, Any]], ...))
ExportRequest = answer("ExportRequest", {
    "id": REQ, "person_id": P, "created_at": AT, "ready_at": None, "status": "collecting", "expected": ["consent"],
    "answered": [], "missing": ["consent"], "late": False, "late_services": []},
    id=(uuid.UUID, ...), person_id=(uuid.UUID, ...), created_at=(datetime, ...), ready_at=(datetime | None, None),
    status=(str, ...), expected=(list[str], ...), answered=(list[str], ...), missing=(list[str], ...),
    late=(bool, ...), late_services=(list[str], ...))
Processor = answer("Processor", PROCESSOR, allow_more=True, id=(Any, ...), name=(str, ...))
Processors = answer("Processors", {"processors": [PROCESSOR], "next": None},
                    processors=(list[Processor], ...),  # type: ignore[valid-type]  # a model create_model made
                    next=(str | None, next_field()))
ProcessingRecord = answer("ProcessingRecord", {"controller": {"name": "Esimerkki Oy"}, "purposes": [],
                                               "processors": [PROCESSOR]}, allow_more=True,
                          controller=(Any, None), processors=(Any, None))

# An objection or erasure request with its deadline from the request queue (issue 14, Art. 17, 21).
SubjectRequest = answer("SubjectRequest", {
    "id": REQ, "kind": "objection", "person_id": P, "scope": "processing", "purposes": [],
    "grounds": "I am no longer the company's contact", "requested_by": "person:" + P, "created_at": AT,
    "decision": None, "decision_reason": None, "decided_by": None, "decided_at": None,
    "received_on": "2025-03-03", "due_date": "2025-04-03", "extended_until": None, "answer_by": "2025-04-03",
    "answered_at": None, "status": "open"}, allow_more=True,
    id=(uuid.UUID, ...), kind=(str, ...), person_id=(uuid.UUID, ...), due_date=(date | None, None),
    status=(str, ...))

# A person's own rectification requests and their outcome (R14, issue 19); who decided is not named.
OwnRectifications = answer("OwnRectifications", {"rectifications": [{
    "id": REQ, "fields": ["title"], "changes": {"title": "CTO"}, "reason": "I was promoted", "status": "rejected",
    "decision_reason": "the title is as the customer reported it", "created_at": AT, "decided_at": AT}],
    "next": None}, rectifications=(list[dict[str, Any]], ...), next=(str | None, next_field()))

