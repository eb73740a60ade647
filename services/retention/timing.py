"""A person's retention timing as the person, staff and the portal see it (issue 14, R6, R7):
when passivation and the final disposition are due, which rule set the date and what it was
counted from, the holds in force, and whether the disposition is blocked past its deadline.

Pure: built from the rows retention keeps (`storage.timing_facts`), no I/O. The same value
answers `GET /persons/{person_id}/retention`, goes into retention's access-report slice (R12),
and its `blocked` rule is the one the `rekisteri_dispositions_blocked_past_deadline` gauge
and `GET /reports/overdue` count (`storage.blocked_dispositions` is its SQL form).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from services.retention.domain import DEADLINE_RULE
from shared.web.openapi import with_example

HELSINKI = ZoneInfo("Europe/Helsinki")  # the register's calendar (SPEC §6, §10)
_RULE = re.compile(r"rule=([^;]+)")
# The anchor a stored basis names: the text before its first "+" or " ".
_ANCHOR = re.compile(r"^([a-z_]+)")


class HoldView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hold_id: uuid.UUID
    reason: str
    until: datetime


class PersonRetention(BaseModel):
    """The shape the portal builds its screens on: keep it (issue 14)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({
        "person_id": "0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b", "state": "ended", "passivation_due": None,
        "disposition_due": "2026-11-24", "rule": "r7.2", "basis": "last assignment end 2025-11-24 + 365d",
        "holds": [], "blocked": False, "overdue_since": None}))

    person_id: uuid.UUID
    state: str
    passivation_due: date | None
    disposition_due: date | None
    rule: str
    basis: str
    holds: list[HoldView]
    blocked: bool
    overdue_since: date | None


@dataclass(frozen=True)
class TimingFacts:
    """What retention holds of one person, as rows (mappings) of its tables."""

    state: str
    deadlines: Sequence[Mapping[str, Any]] = ()  # pending and done deadlines, newest first
    holds: Sequence[Mapping[str, Any]] = ()  # holds not released
    open_commands: Sequence[Mapping[str, Any]] = ()  # evidence not completed, newest first
    open_spans: int = 0  # relationships and assignments not ended
    spans: int = 0


def local_date(moment: datetime | None) -> date | None:
    return moment.astimezone(HELSINKI).date() if moment is not None else None


def legal_due(deadline: Mapping[str, Any]) -> datetime:
    """The deadline the rule set, before any hold deferred it."""
    return deadline.get("deferred_from") or deadline["due_at"]


def describe_basis(basis: str, anchor_at: datetime, due_at: datetime) -> str:
    """"relationship_ended 2026-11-30 + 0d": the fact the date counts from, its day, the days added."""
    found = _ANCHOR.match(basis)
    anchor = found.group(1) if found else basis
    return f"{anchor} {local_date(anchor_at)} + {(due_at - anchor_at) // timedelta(days=1)}d"


def rule_of(policy_version: str | None) -> str:
    found = _RULE.search(policy_version or "")
    return found.group(1) if found else DEADLINE_RULE


def _latest(rows: Sequence[Mapping[str, Any]], *actions: str) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["action"] in actions), None)


def holds_in_force(holds: Sequence[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    return [h for h in holds if h.get("released_at") is None and h["expires_at"] > now]


def command_unconfirmed_in_time(command: Mapping[str, Any], now: datetime, timeout_s: float) -> bool:
    """A disposition command some expected service has not confirmed within the timeout of its
    first sending: a re-sent command is no less blocked (the scheduler re-sends overdue ones)."""
    return command.get("overdue_since") is not None or command["commanded_at"] < now - timedelta(seconds=timeout_s)


def blocked_since(facts: TimingFacts, now: datetime, timeout_s: float) -> datetime | None:
    """The legal deadline of a disposition that is past it yet kept — by a hold in force, or by
    a command not every service confirmed in time — or None if nothing blocks it."""
    pending = _latest([d for d in facts.deadlines if d["status"] == "pending"], "dispose")
    if pending is not None and legal_due(pending) <= now and holds_in_force(facts.holds, now):
        return legal_due(pending)
    command = _latest(facts.open_commands, "erase", "transfer_to_marketing")
    if command is not None and command_unconfirmed_in_time(command, now, timeout_s):
        return command["deadline_at"]
    return None


def _basis_without_deadline(facts: TimingFacts) -> str:
    if facts.open_spans:
        return "kept while a relationship or assignment lasts (R5, R6)"
    if not facts.spans:
        return "no relationship or assignment known to retention"
    return "no deadline pending"


def person_retention(person_id: uuid.UUID, facts: TimingFacts, now: datetime, timeout_s: float) -> PersonRetention:
    """The visible timing of one person (issue 14): dates on the Helsinki calendar."""
    pending = [d for d in facts.deadlines if d["status"] == "pending"]
    passivation = _latest(pending, "passivate")
    disposition = _latest(pending, "dispose") or _latest(facts.deadlines, "dispose")
    passivation_command = _latest(facts.open_commands, "passivate")
    counted = disposition or passivation
    if counted is not None:
        basis = describe_basis(counted["basis"], counted["anchor_at"], legal_due(counted))
    else:
        basis = _basis_without_deadline(facts)
    since = blocked_since(facts, now, timeout_s)
    return PersonRetention(
        person_id=person_id, state=facts.state,
        passivation_due=local_date(legal_due(passivation) if passivation else
                                   passivation_command["deadline_at"] if passivation_command else None),
        disposition_due=local_date(legal_due(disposition)) if disposition else None,
        rule=rule_of(counted["policy_version"] if counted else None), basis=basis,
        holds=[HoldView(hold_id=h["hold_id"], reason=h["reason"], until=h["expires_at"])
               for h in sorted(holds_in_force(facts.holds, now), key=lambda h: h["expires_at"])],
        blocked=since is not None, overdue_since=local_date(since))
