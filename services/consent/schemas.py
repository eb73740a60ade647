"""The consent service's HTTP answers as models, each with an example (issue 17)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.messaging.events import Channel, Purpose
from shared.web.openapi import with_example
from shared.web.paging import next_field

PERSON = "0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b"
CHECK_REQUEST = {"purpose": "direct_advertising", "channel": "email", "email": "matti.meikalainen@example.fi"}
BATCH_REQUEST = {"purpose": "direct_advertising", "channel": "email", "emails": ["matti.meikalainen@example.fi"],
                 "phones": ["+358401234567"], "person_ids": [PERSON]}
CHANGE_REQUEST = {"purpose": "direct_advertising", "channel": "email", "decision": "grant", "method": "web form",
                  "source": "staff", "notice_version": "2025-01"}
OPTOUT_REQUEST = {"person_id": None, "emails": ["matti.meikalainen@example.fi"], "phones": [],
                  "purposes": ["direct_advertising"], "channels": ["email", "sms"], "method": "phone call",
                  "source": "staff", "notice_version": None}
NOTICE_REQUEST = {"version": "2025-01", "language": "fi", "text": "Käsittelemme yhteystietojasi markkinointiin..."}
STATE = {"purpose": "direct_advertising", "channel": "email", "status": "granted", "source": "staff",
         "method": "web form", "actor": "owner", "notice_version": "2025-01", "recorded_at": "2025-03-01T10:00:00+00:00"}


class Outcome(BaseModel):
    allowed: bool
    reason: str


class CheckOut(Outcome):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"purpose": "direct_advertising", "channel": "email", "allowed": False, "reason": "banned"}))

    purpose: Purpose
    channel: Channel


class BatchOut(BaseModel):
    """Outcomes in the order sent, per list; `restricted` for a passivated person this role may not see (R6)."""

    model_config = ConfigDict(json_schema_extra=with_example({
        "purpose": "direct_advertising", "channel": "email", "emails": [{"allowed": True, "reason": "granted"}],
        "phones": [{"allowed": False, "reason": "suppression_list"}], "person_ids": [{"allowed": False,
                                                                                     "reason": "restricted"}],
        "checked": 3, "denied": 2}))

    purpose: Purpose
    channel: Channel
    emails: list[Outcome]
    phones: list[Outcome]
    person_ids: list[Outcome]
    checked: int
    denied: int


class ConsentState(BaseModel):
    model_config = ConfigDict(extra="allow")

    purpose: str
    channel: str
    status: str | None = None
    change: str | None = None
    source: str | None
    method: str | None
    actor: str | None
    notice_version: str | None
    recorded_at: datetime


# One state a purpose and channel (consent_state's key): a person's current choices are bounded.
MAX_STATES = len(Purpose) * len(Channel)


class PersonConsents(BaseModel):
    """The current choices (at most one per purpose and channel) and a page of their history,
    oldest first (issue 20): `next` is the `cursor` of the history's next page."""

    model_config = ConfigDict(json_schema_extra=with_example({
        "person_id": PERSON, "consents": [STATE],
        "history": [{k: v for k, v in STATE.items() if k != "status"} | {"change": "granted"}], "next": None}))

    person_id: uuid.UUID
    consents: list[ConsentState] = Field(max_length=MAX_STATES)
    history: list[ConsentState]
    next: str | None = next_field()


class ChangeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"person_id": PERSON, "purpose": "direct_advertising", "channel": "email", "status": "granted"}))

    person_id: uuid.UUID
    purpose: str
    channel: str
    status: str


class OptoutOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"person_id": None, "new_bans": 2}))

    person_id: uuid.UUID | None
    new_bans: int


class RegisterEntry(BaseModel):
    person_id: uuid.UUID
    transferred_at: datetime
    consents: list[dict[str, Any]]


class MarketingRegister(BaseModel):
    """A page by person id: pass `next` as `cursor` for the next one (null on the last, issue 20)."""

    model_config = ConfigDict(json_schema_extra=with_example({"next": None, "persons": [
        {"person_id": PERSON, "transferred_at": "2025-02-01T00:00:00+00:00",
         "consents": [{"purpose": "direct_advertising", "channel": "email", "status": "granted"}]}]}))

    persons: list[RegisterEntry]
    next: str | None = next_field()


class NoticeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"version": "2025-01", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
         "language": "fi"}))

    version: str
    sha256: str
    language: str


class Notice(NoticeOut):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"version": "2025-01", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
         "language": "fi", "published_at": "2025-01-01T00:00:00+00:00", "text": NOTICE_REQUEST["text"]}))

    published_at: datetime
    text: str


class ConsentRecord(BaseModel):
    id: int
    purpose: str
    channel: str
    change: str
    notice_version: str | None
    recorded_at: datetime


class ConsentRecords(BaseModel):
    """A page of a person's records by id (issue 20): `next` is the cursor of the next page."""

    model_config = ConfigDict(json_schema_extra=with_example({"person_id": PERSON, "next": None, "records": [
        {"id": 41, "purpose": "direct_advertising", "channel": "email", "change": "granted",
         "notice_version": "2025-01", "recorded_at": "2025-03-01T10:00:00+00:00"}]}))

    person_id: uuid.UUID
    records: list[ConsentRecord]
    next: str | None = next_field()


class Receipt(BaseModel):
    """A Kantara consent receipt (v1.1 fields) of one recorded permission or ban."""

    model_config = ConfigDict(extra="allow", json_schema_extra=with_example({
        "version": "KI-CR-v1.1.0", "jurisdiction": "FI", "consentTimestamp": 1740823200,
        "collectionMethod": "web form", "consentReceiptID": f"{PERSON}:41", "language": "fi",
        "piiPrincipalId": PERSON, "piiControllers": [], "policyUrl": "https://example.fi/tietosuoja",
        "services": [], "sensitive": False, "spiCat": []}))

    version: str
    jurisdiction: str
    consentTimestamp: int
    consentReceiptID: str
    piiPrincipalId: str
