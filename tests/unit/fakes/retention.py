"""An in-memory stand-in for retention's storage (the functions handlers call through
`ctx.store`), for unit tests of one handler. The integration tests run the real SQL."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from services.retention.domain import ErasureRequest, PlannedDeadline, Span
from services.retention.timing import TimingFacts


@dataclass
class Deadline:
    action: str
    due_at: datetime
    basis: str
    policy_version: str
    anchor_at: datetime | None = None


@dataclass
class RetentionStore:
    states: dict[uuid.UUID, str] = field(default_factory=dict)
    disposed: dict[uuid.UUID, str] = field(default_factory=dict)
    relationships: dict[uuid.UUID, tuple[uuid.UUID, datetime | None, datetime | None]] = field(default_factory=dict)
    assignments: dict[tuple[uuid.UUID, uuid.UUID], tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    deadlines: dict[uuid.UUID, dict[str, Deadline]] = field(default_factory=dict)
    permissions: set[tuple[uuid.UUID, str, str]] = field(default_factory=set)
    bans: set[tuple[uuid.UUID, str]] = field(default_factory=set)
    evidence: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)  # command id → row
    shredded: set[uuid.UUID] = field(default_factory=set)  # persons whose data keys are destroyed
    erasure_requests: dict[uuid.UUID, ErasureRequest] = field(default_factory=dict)

    async def lock_person(self, person_id: uuid.UUID) -> str | None:
        if person_id in self.disposed:
            return None
        return self.states.setdefault(person_id, "active")

    async def set_state(self, person_id: uuid.UUID, state: str) -> None:
        self.states[person_id] = str(state)

    async def relationship_started(self, person_id, relationship_id, started_at) -> None:
        _, _, ended = self.relationships.get(relationship_id, (person_id, None, None))
        self.relationships[relationship_id] = (person_id, started_at, ended)

    async def relationship_ended(self, person_id, relationship_id, ended_at) -> None:
        _, started, _ = self.relationships.get(relationship_id, (person_id, None, None))
        self.relationships[relationship_id] = (person_id, started, ended_at)

    async def assignment_started(self, person_id, assignment_id, started_at) -> None:
        _, ended = self.assignments.get((person_id, assignment_id), (None, None))
        self.assignments[(person_id, assignment_id)] = (started_at, ended)

    async def assignment_ended(self, person_id, assignment_id, ended_at) -> None:
        started, _ = self.assignments.get((person_id, assignment_id), (None, None))
        self.assignments[(person_id, assignment_id)] = (started, ended_at)

    async def spans(self, person_id) -> tuple[list[Span], list[Span]]:
        rels = [Span(e) for p, _, e in self.relationships.values() if p == person_id]
        asgs = [Span(e) for (p, _), (_, e) in self.assignments.items() if p == person_id]
        return rels, asgs

    async def sync_deadlines(self, person_id, planned: Sequence[PlannedDeadline], policy_version: str) -> None:
        self.deadlines[person_id] = {p.action: Deadline(p.action, p.due_at, p.basis, policy_version, p.anchor_at)
                                     for p in planned}

    async def grant_permission(self, person_id, purpose, channel) -> None:
        self.permissions.add((person_id, purpose, channel))
        self.bans.discard((person_id, purpose))

    async def withdraw_permission(self, person_id, purpose, channel) -> None:
        self.permissions.discard((person_id, purpose, channel))

    async def register_ban(self, person_id, purposes) -> None:
        for purpose in purposes:
            self.bans.add((person_id, purpose))
            self.permissions = {p for p in self.permissions if p[:2] != (person_id, purpose)}

    async def request_erasure(self, person_id, request_id, requested_at) -> None:
        self.erasure_requests.setdefault(person_id, ErasureRequest(request_id, requested_at))

    async def erasure_request(self, person_id) -> ErasureRequest | None:
        return self.erasure_requests.get(person_id)

    async def forget_persons(self, person_ids, outcome) -> None:
        for person_id in person_ids:
            self.erasure_requests.pop(person_id, None)
            self.disposed.setdefault(person_id, outcome)
            self.states.pop(person_id, None)
            self.deadlines.pop(person_id, None)
            self.relationships = {k: v for k, v in self.relationships.items() if v[0] != person_id}
            self.assignments = {k: v for k, v in self.assignments.items() if k[0] != person_id}
            self.permissions = {p for p in self.permissions if p[0] != person_id}
            self.bans = {b for b in self.bans if b[0] != person_id}

    async def resolve_commands(self, person_ids, actions) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
        latest: dict[tuple[uuid.UUID, str], tuple[datetime, uuid.UUID]] = {}
        wanted = set(zip(person_ids, actions))
        for command_id, row in self.evidence.items():
            key = (row["person_id"], row["action"])
            if key in wanted and (key not in latest or row["commanded_at"] > latest[key][0]):
                latest[key] = (row["commanded_at"], command_id)
        return {k: v[1] for k, v in latest.items()}

    async def record_confirmations(self, command_ids, services, confirmed_at, now) -> int:
        changed = 0
        for command_id, service, at in zip(command_ids, services, confirmed_at):
            row = self.evidence.get(command_id)
            if row is None:
                continue
            row["confirmations"].setdefault(service, at)
            if row["completed_at"] is None and set(row["expected"]) <= set(row["confirmations"]):
                row["completed_at"] = now
            changed += 1
        return changed

    async def shred_completed_erasures(self, command_ids) -> list[uuid.UUID]:
        persons = sorted({row["person_id"] for c, row in self.evidence.items()
                          if c in command_ids and row["action"] == "erase" and row["completed_at"] is not None})
        self.shredded |= set(persons)
        return persons

    async def person_slice(self, person_id) -> dict[str, list[dict[str, Any]]]:
        return {"person": [{"state": self.states[person_id]}] if person_id in self.states else [],
                "deadlines": [{"action": d.action, "due_at": d.due_at, "basis": d.basis}
                              for d in self.deadlines.get(person_id, {}).values()]}

    async def timing_facts(self, person_id) -> TimingFacts | None:
        if person_id not in self.states:
            return None
        rels, asgs = await self.spans(person_id)
        return TimingFacts(
            state=self.states[person_id],
            deadlines=[{"action": d.action, "status": "pending", "due_at": d.due_at, "deferred_from": None,
                        "basis": d.basis, "anchor_at": d.anchor_at, "policy_version": d.policy_version}
                       for d in self.deadlines.get(person_id, {}).values()],
            open_commands=[{**row, "last_commanded_at": row["commanded_at"], "overdue_since": None}
                           for row in self.evidence.values()
                           if row["person_id"] == person_id and row["completed_at"] is None],
            open_spans=sum(s.ended_at is None for s in [*rels, *asgs]), spans=len(rels) + len(asgs))
