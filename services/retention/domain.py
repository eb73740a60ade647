"""Retention's rules as functions of values (no I/O): the policy, the deadlines a person's
relationships and assignments give (R5–R7), the disposition decision (R7, R8), holds, and
which services must confirm a command."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Iterable, Literal, Mapping, Protocol

from shared.lifecycle import State
from shared.messaging.events import DispositionCommanded, PassivationCommanded

MAX_DISPOSITION_DAYS = 365  # R7: "at the latest one year after the end of the last assignment"
# Which deadline rule set a timer: part of `Policy.version`, so timers planned under an earlier
# rule (or policy) are re-planned at start-up. r7.2: the year counts from the last assignment's end.
DEADLINE_RULE = "r7.2"

Action = Literal["passivate", "dispose"]
Disposition = Literal["erase", "transfer_to_marketing"]
# Retention's view of a person is the lifecycle contacts confirms (`shared.lifecycle.State`),
# plus one state of its own: a disposition has been commanded and no timer runs again.
DISPOSING = "disposing"
# States in which a person's timers may still run.
TIMED_STATES = frozenset({State.prospect, State.active, State.ended, State.passive})

EXPECTED_CONFIRMATIONS: dict[str, tuple[str, ...]] = {
    "passivate": ("contacts",),
    "erase": ("contacts", "consent", "billing", "retention"),
    "transfer_to_marketing": ("contacts", "consent"),
}


class PolicyError(ValueError):
    """A retention policy that the privacy notice does not allow."""


@dataclass(frozen=True)
class Policy:
    grace_days: int
    disposition_days: int

    @classmethod
    def validated(cls, grace_days: int, disposition_days: int) -> Policy:
        if grace_days < 0:
            raise PolicyError("RETENTION_GRACE_DAYS must be 0 or more")
        if disposition_days < 0:
            raise PolicyError("RETENTION_DISPOSITION_DAYS must be 0 or more")
        if disposition_days > MAX_DISPOSITION_DAYS:
            raise PolicyError(
                f"RETENTION_DISPOSITION_DAYS is {disposition_days}: the final disposition may come at most "
                f"{MAX_DISPOSITION_DAYS} days after the last assignment or relationship ended (R7)")
        if grace_days > disposition_days:
            raise PolicyError("RETENTION_GRACE_DAYS may not exceed RETENTION_DISPOSITION_DAYS (passivation precedes disposition)")
        return cls(grace_days, disposition_days)

    @property
    def version(self) -> str:
        """Recorded in evidence: which policy a deadline was computed under."""
        return f"rule={DEADLINE_RULE};grace={self.grace_days}d;disposition={self.disposition_days}d"


# ---- time -----------------------------------------------------------------------------

class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told: tests jump a year without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)


# ---- deadlines ------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """A relationship or an assignment: open while `ended_at` is None."""

    ended_at: datetime | None


@dataclass(frozen=True)
class PlannedDeadline:
    action: Action
    due_at: datetime
    anchor_at: datetime
    basis: str


@dataclass(frozen=True)
class ErasureRequest:
    """The register owner decided the person's erasure request `erase` (Art. 17, issue 14)."""

    request_id: uuid.UUID
    requested_at: datetime


def plan_deadlines(state: str, relationships: Iterable[Span], assignments: Iterable[Span],
                   policy: Policy, erasure: ErasureRequest | None = None) -> list[PlannedDeadline]:
    """The timers a person should have now.

    A decided erasure request overrides the spans: the disposition is due when it was heard of
    (Art. 17); a hold in force still defers it at claim time (Art. 17(3)).

    An open relationship keeps the data (R5); an open assignment keeps the person active for
    it (R6). Once everything has ended, passivation counts from the latest end plus the grace
    period, and the disposition falls due as R7 says (`disposition_due`). A passivation that
    would come no earlier than the disposition is not planned: the disposition comes first.
    """
    if state not in TIMED_STATES:
        return []
    if erasure is not None:
        return [PlannedDeadline("dispose", erasure.requested_at, erasure.requested_at,
                                f"erasure_request {erasure.request_id} (Art. 17)")]
    rels, asgs = list(relationships), list(assignments)
    if not rels and not asgs:
        return []
    if any(s.ended_at is None for s in [*rels, *asgs]):
        return []
    last_rel = max((s.ended_at for s in rels if s.ended_at), default=None)
    last_asg = max((s.ended_at for s in asgs if s.ended_at), default=None)
    dispose = disposition_due(last_rel, last_asg, policy)
    latest = max(t for t in (last_rel, last_asg) if t is not None)
    passivate_at = latest + timedelta(days=policy.grace_days)
    planned = []
    if state != "passive" and passivate_at < dispose.due_at:
        basis = "last_assignment_ended" if latest == last_asg else "relationship_ended"
        planned.append(PlannedDeadline("passivate", passivate_at, latest, f"{basis}+grace:{policy.grace_days}d"))
    planned.append(dispose)
    return planned


def disposition_due(last_rel: datetime | None, last_asg: datetime | None, policy: Policy) -> PlannedDeadline:
    """R7: at the latest a year after the last assignment ended, but never while a relationship
    lasted (R5): `max(last relationship end, last assignment end + 365 d)`, at once if that year
    has passed. Without any assignment: the last relationship end + the passivation period."""
    if last_asg is not None:
        year_after = last_asg + timedelta(days=MAX_DISPOSITION_DAYS)
        if last_rel is not None and last_rel > year_after:
            return PlannedDeadline("dispose", last_rel, last_rel,
                                   f"relationship_ended (last_assignment_ended+{MAX_DISPOSITION_DAYS}d had passed)")
        return PlannedDeadline("dispose", year_after, last_asg, f"last_assignment_ended+{MAX_DISPOSITION_DAYS}d")
    assert last_rel is not None
    return PlannedDeadline("dispose", last_rel + timedelta(days=policy.disposition_days), last_rel,
                           f"relationship_ended+passivation:{policy.disposition_days}d")


# ---- disposition ----------------------------------------------------------------------

def disposition_for(granted_purposes: Iterable[str], banned_purposes: Iterable[str], *,
                    erasure_requested: bool = False) -> Disposition:
    """R7: transfer to the marketing register only with a permission and no ban (R8), and never
    a person whose erasure request was decided `erase` (Art. 17, issue 14)."""
    granted, banned = set(granted_purposes), set(banned_purposes)
    return "transfer_to_marketing" if granted and not banned and not erasure_requested else "erase"


@dataclass(frozen=True)
class Hold:
    expires_at: datetime
    released_at: datetime | None = None


def active_hold_until(holds: Iterable[Hold], now: datetime) -> datetime | None:
    """When the latest hold in force expires, or None if nothing holds the disposition now."""
    ends = [h.expires_at for h in holds if h.released_at is None and h.expires_at > now]
    return max(ends, default=None)


def command_for(evidence: Mapping[str, Any], *, recommanded: bool = False) -> PassivationCommanded | DispositionCommanded:
    """The command one evidence row stands for; its basis names the rule, deadline and policy."""
    basis = f"{evidence['basis']} due {evidence['deadline_at'].isoformat()} policy {evidence['policy_version']}"
    if recommanded:
        basis += " (re-commanded: overdue)"
    if evidence["action"] == "passivate":
        return PassivationCommanded(command_id=evidence["command_id"], person_id=evidence["person_id"], basis=basis)
    return DispositionCommanded(command_id=evidence["command_id"], person_id=evidence["person_id"],
                                action=evidence["action"], basis=basis)


def expected_confirmations(action: str) -> tuple[str, ...]:
    return EXPECTED_CONFIRMATIONS[action]


def is_complete(action: str, confirmed_services: Iterable[str]) -> bool:
    return set(expected_confirmations(action)) <= set(confirmed_services)


def is_overdue(last_commanded_at: datetime, completed: bool, now: datetime, timeout_s: float) -> bool:
    return not completed and now - last_commanded_at > timedelta(seconds=timeout_s)
