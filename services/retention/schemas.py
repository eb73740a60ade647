"""The retention service's HTTP bodies and answers as models (issue 17); list answers are
cursor pages (issue 20): `count` of all matching, `items` of this page, `next` for the rest."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.web.openapi import with_example

PERSON = "0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b"
HOLD = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
COMMAND = "6e7f8a9b-0c1d-4e2f-9a3b-4c5d6e7f8a9b"
NEXT = "WyIyMDI1LTA2LTAxVDAwOjAwOjAwKzAwOjAwIiwgIjQyIl0"


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"person_id": PERSON, "reason": "court case 2025/123", "expires_at": "2026-12-31T00:00:00+02:00"}))

    person_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500)
    expires_at: AwareDatetime


class HoldOut(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"hold_id": HOLD, "person_id": PERSON, "expires_at": "2026-12-31T00:00:00+02:00"}))

    hold_id: uuid.UUID
    person_id: uuid.UUID
    expires_at: datetime


class HoldReleased(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"hold_id": HOLD, "released": True}))

    hold_id: uuid.UUID
    released: Literal[True]


class DueItem(BaseModel):
    person_id: uuid.UUID
    action: Literal["passivate", "dispose"]
    due_at: datetime
    basis: str
    policy_version: str


class DueReport(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"days": 30, "count": 1, "next": None, "items": [
        {"person_id": PERSON, "action": "passivate", "due_at": "2025-06-01T00:00:00+00:00",
         "basis": "no active relationship for 24 months", "policy_version": "2025-01"}]}))

    days: int
    count: int = Field(description="All matching, across pages")
    items: list[DueItem]
    next: str | None = Field(description="The cursor of the next page; null on the last")


class HeldItem(BaseModel):
    hold_id: uuid.UUID
    person_id: uuid.UUID
    reason: str
    expires_at: datetime
    created_by: str
    created_at: datetime


class HeldReport(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"count": 1, "next": NEXT, "items": [
        {"hold_id": HOLD, "person_id": PERSON, "reason": "court case 2025/123",
         "expires_at": "2026-12-31T00:00:00+02:00", "created_by": "owner", "created_at": "2025-05-02T10:00:00+00:00"}]}))

    count: int
    items: list[HeldItem]
    next: str | None


class OverdueItem(BaseModel):
    command_id: uuid.UUID
    person_id: uuid.UUID
    action: str
    basis: str
    commanded_at: datetime
    attempts: int
    missing: list[str]


class BlockedDisposition(BaseModel):
    """A disposition past its deadline that a legal hold or an unconfirmed command keeps (issue 14)."""

    person_id: uuid.UUID
    blocked_by: str
    deadline_at: datetime
    overdue_since: date | None
    hold_id: uuid.UUID | None = None
    command_id: uuid.UUID | None = None


class OverdueReport(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"count": 1, "next": None, "items": [
        {"command_id": COMMAND, "person_id": PERSON, "action": "erase", "basis": "retention period ended",
         "commanded_at": "2025-05-01T00:00:00+00:00", "attempts": 2, "missing": ["billing"]}]}))

    count: int
    items: list[OverdueItem]
    next: str | None
    blocked_count: int = Field(0, description="Persons whose disposition is blocked past its deadline")
    blocked: list[BlockedDisposition] = Field([], description="The first page of `GET /reports/blocked`")
    blocked_next: str | None = Field(None, description="The `cursor` of `GET /reports/blocked` for the rest;"
                                     " null when `blocked` is all")


class BlockedReport(BaseModel):
    """Dispositions past their deadline kept by a hold in force or a command not confirmed in
    time (issue 14): `count` persons, the rows oldest deadline first."""

    model_config = ConfigDict(json_schema_extra=with_example({"count": 1, "next": None, "items": [
        {"person_id": PERSON, "blocked_by": "hold", "deadline_at": "2025-05-01T00:00:00+00:00",
         "overdue_since": "2025-05-01", "hold_id": HOLD, "command_id": None}]}))

    count: int
    items: list[BlockedDisposition]
    next: str | None


class Summary(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"days": 30, "due": 4, "held": 1, "overdue": 0, "policy_version": "2025-01"}))

    days: int
    due: int
    held: int
    overdue: int
    policy_version: str


class EvidenceItem(BaseModel):
    command_id: uuid.UUID
    action: str
    basis: str
    deadline_at: datetime
    policy_version: str
    commanded_at: datetime
    attempts: int
    expected: list[str]
    confirmations: dict[str, Any]
    completed_at: datetime | None


class Evidence(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"person_id": PERSON, "data_key_destroyed_at": None, "items": [
        {"command_id": COMMAND, "action": "erase", "basis": "retention period ended",
         "deadline_at": "2025-05-01T00:00:00+00:00", "policy_version": "2025-01",
         "commanded_at": "2025-05-01T00:00:00+00:00", "attempts": 1, "expected": ["contacts", "consent", "billing"],
         "confirmations": {"contacts": "2025-05-01T00:00:03+00:00"}, "completed_at": None}]}))

    person_id: uuid.UUID
    # Issue 15: when the person's data key was destroyed (crypto-shredding); null while it lives.
    data_key_destroyed_at: datetime | None = None
    items: list[EvidenceItem]
