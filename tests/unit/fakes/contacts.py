"""An in-memory stand-in for contacts' storage: the functions its handlers, the use cases they
call (`services/contacts/service.py`) and `access.on_access_report_part` reach through
`ctx.store`, each modelling its SQL in `services/contacts/storage.py` (cascades of a deleted
person included). For unit tests of one handler; the integration tests run the real SQL."""
from __future__ import annotations

import hashlib

import copy
import uuid

from shared import privacy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.contacts.domain import MARKETING_FIELDS, PERSON_FIELDS, State
from shared.messaging.envelope import utcnow


class ForeignKeyViolation(Exception):
    """What PostgreSQL would refuse: a row naming a person or assignment that does not exist."""


@dataclass
class ContactsStore:
    organisations: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    persons: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    sources: dict[tuple[uuid.UUID, str], str] = field(default_factory=dict)  # (person, field) → source
    relationships: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    assignments: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    participants: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = field(default_factory=dict)  # (asg, person)
    bans: set[tuple[uuid.UUID, str]] = field(default_factory=set)  # (person, purpose)
    suppressed: set[tuple[str, str]] = field(default_factory=set)  # (digest, purpose)
    erased: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)  # person → erased_at, command_id
    access_requests: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    report_parts: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = field(default_factory=dict)
    erasure_decisions: set[uuid.UUID] = field(default_factory=set)  # persons with an erasure request decided `erase`
    portability_exports: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    _last_now: datetime | None = None

    def now(self) -> datetime:
        """now(), strictly increasing, so "erased after the request was made" is decidable."""
        moment = utcnow()
        if self._last_now is not None and moment <= self._last_now:
            moment = self._last_now + timedelta(microseconds=1)
        self._last_now = moment
        return moment

    def _require_person(self, person_id: uuid.UUID) -> None:
        if person_id not in self.persons:
            raise ForeignKeyViolation("person_id")

    # ---- organisations ------------------------------------------------------------------

    async def get_organisation(self, org_id) -> dict[str, Any] | None:
        return copy.deepcopy(self.organisations.get(org_id))

    async def ensure_organisation(self, business_id: str, name: str | None, source: str) -> uuid.UUID:
        for org in self.organisations.values():
            if org["business_id"] == business_id:
                return org["id"]
        org_id = uuid.uuid4()
        self.organisations[org_id] = dict(id=org_id, name=name or business_id, business_id=business_id,
                                          address=None, phone=None, source=source, created_at=self.now())
        return org_id

    # ---- persons ------------------------------------------------------------------------

    async def insert_person(self, person_id, fields: dict[str, Any], *, source: str, legal_basis: str,
                            purposes: list[str], state: State, external_ref: str | None = None) -> None:
        if person_id in self.persons:
            raise ValueError("persons: duplicate id")
        if external_ref is not None and any(p["external_ref"] == external_ref for p in self.persons.values()):
            raise ValueError("persons: duplicate external_ref")
        org_id = fields.get("organisation_id")
        if org_id is not None and org_id not in self.organisations:
            raise ForeignKeyViolation("organisation_id")
        now = self.now()
        self.persons[person_id] = dict(
            id=person_id, first_name=fields["first_name"], last_name=fields["last_name"], title=fields.get("title"),
            expertise=fields.get("expertise"), emails=list(fields.get("emails") or []),
            phones=list(fields.get("phones") or []), other_contact=dict(fields.get("other_contact") or {}),
            organisation_id=org_id, legal_basis=legal_basis, purposes=list(purposes), lifecycle_state=state.value,
            external_ref=external_ref, state_changed_at=now, created_at=now, updated_at=now)
        self._record_sources(person_id, [f for f in PERSON_FIELDS if fields.get(f) not in (None, [], {})], source)

    def _record_sources(self, person_id, names: list[str], source: str) -> None:
        for name in names:
            self.sources[(person_id, name)] = source

    async def get_person(self, person_id, *, for_update: bool = False) -> dict[str, Any] | None:
        return copy.deepcopy(self.persons.get(person_id))

    async def person_by_external_ref(self, external_ref: str) -> dict[str, Any] | None:
        for person in self.persons.values():
            if person["external_ref"] == external_ref:
                return copy.deepcopy(person)
        return None

    async def field_sources(self, person_id) -> dict[str, dict[str, Any]]:
        return {f: {"source": s, "recorded_at": None} for (p, f), s in self.sources.items() if p == person_id}

    async def update_person(self, person_id, changes: dict[str, Any], source: str) -> None:
        names = [f for f in PERSON_FIELDS if f in changes]
        if not names or person_id not in self.persons:
            return
        self.persons[person_id].update({n: copy.deepcopy(changes[n]) for n in names}, updated_at=self.now())
        self._record_sources(person_id, names, source)

    async def set_state(self, person_id, state: State) -> None:
        if person_id in self.persons:
            now = self.now()
            self.persons[person_id].update(lifecycle_state=state.value, state_changed_at=now, updated_at=now)

    async def add_purposes(self, person_id, purposes: list[str]) -> None:
        if person_id in self.persons:
            person = self.persons[person_id]
            person["purposes"] = sorted({*person["purposes"], *purposes})

    async def persons_with_contact_points(self, emails: list[str], phones: list[str]) -> list[uuid.UUID]:
        return [p["id"] for p in self.persons.values()
                if set(p["emails"]) & set(emails) or set(p["phones"]) & set(phones)]

    # ---- relationships and assignments --------------------------------------------------

    async def insert_relationship(self, rel_id, person_id, organisation_id, kind: str, started_at: datetime,
                                  source: str) -> bool:
        existing = self.relationships.get(rel_id)
        if existing is None:
            self._require_person(person_id)
            self.relationships[rel_id] = dict(id=rel_id, person_id=person_id, organisation_id=organisation_id,
                                              kind=kind, started_at=started_at, ended_at=None, source=source)
            return True
        if existing["person_id"] == person_id and existing["started_at"] is None:  # the end came first
            existing["kind"] = existing["kind"] or kind
            existing["started_at"] = started_at
            existing["organisation_id"] = existing["organisation_id"] or organisation_id
        return False

    async def get_relationship(self, rel_id) -> dict[str, Any] | None:
        return copy.deepcopy(self.relationships.get(rel_id))

    async def end_relationship(self, rel_id, ended_at: datetime) -> bool:
        rel = self.relationships.get(rel_id)
        if rel is None or rel["ended_at"] is not None:
            return False
        rel["ended_at"] = ended_at
        return True

    async def end_relationship_seen_first(self, rel_id, person_id, ended_at: datetime, source: str) -> bool:
        if rel_id in self.relationships:
            return False
        self._require_person(person_id)
        self.relationships[rel_id] = dict(id=rel_id, person_id=person_id, organisation_id=None, kind=None,
                                          started_at=None, ended_at=ended_at, source=source)
        return True

    async def ensure_assignment(self, assignment_id, given_by: str | None, title: str | None,
                                started_at: datetime | None, source: str) -> None:
        existing = self.assignments.get(assignment_id)
        if existing is None:
            self.assignments[assignment_id] = dict(id=assignment_id, given_by=given_by, title=title, status="open",
                                                   started_at=started_at, ended_at=None, source=source)
        elif existing["given_by"] is None or existing["started_at"] is None:
            existing["given_by"] = existing["given_by"] or given_by
            existing["started_at"] = existing["started_at"] or started_at

    async def get_assignment(self, assignment_id) -> dict[str, Any] | None:
        row = copy.deepcopy(self.assignments.get(assignment_id))
        if row is not None:
            row["participants"] = [
                dict(person_id=p, started_at=v["started_at"], ended_at=v["ended_at"])
                for (a, p), v in sorted(self.participants.items(), key=lambda kv: str(kv[0][1]))
                if a == assignment_id]
        return row

    async def add_participant(self, assignment_id, person_id, started_at: datetime) -> bool:
        key = (assignment_id, person_id)
        existing = self.participants.get(key)
        if existing is None:
            if assignment_id not in self.assignments:
                raise ForeignKeyViolation("assignment_id")
            self._require_person(person_id)
            self.participants[key] = dict(started_at=started_at, ended_at=None)
            return True
        if existing["started_at"] is None:  # the end came first: only the time is filled in
            existing["started_at"] = started_at
        return False

    async def end_participation_seen_first(self, assignment_id, person_id, ended_at: datetime) -> bool:
        await self.ensure_assignment(assignment_id, None, None, None, "service_event")
        key = (assignment_id, person_id)
        if key in self.participants:
            return False
        self._require_person(person_id)
        self.participants[key] = dict(started_at=None, ended_at=ended_at)
        self._end_assignment_when_no_one_is_left(assignment_id, ended_at)
        return True

    def _end_assignment_when_no_one_is_left(self, assignment_id, ended_at: datetime) -> None:
        assignment = self.assignments.get(assignment_id)
        if assignment is not None and assignment["status"] == "open" and not any(
                a == assignment_id and v["ended_at"] is None for (a, _), v in self.participants.items()):
            assignment.update(status="ended", ended_at=ended_at)

    async def end_participation(self, assignment_id, person_id, ended_at: datetime) -> bool:
        part = self.participants.get((assignment_id, person_id))
        ended = part is not None and part["ended_at"] is None
        if ended:
            part["ended_at"] = ended_at  # type: ignore[index]
        self._end_assignment_when_no_one_is_left(assignment_id, ended_at)
        return ended

    async def open_connections(self, person_id) -> int:
        return (sum(r["person_id"] == person_id and r["ended_at"] is None for r in self.relationships.values())
                + sum(p == person_id and v["ended_at"] is None for (_, p), v in self.participants.items()))

    # ---- marketing bans and suppressed contact points -------------------------------------

    async def add_bans(self, person_id, purposes: list[str]) -> None:
        self._require_person(person_id)
        self.bans |= {(person_id, purpose) for purpose in purposes}

    async def bans_of(self, person_id) -> list[str]:
        return sorted(purpose for p, purpose in self.bans if p == person_id)

    @staticmethod
    def digests(emails: list[str], phones: list[str]) -> list[str]:
        """What the real store keeps: a keyed digest of each normalised point (here a stand-in
        that still shows no value is kept)."""
        normal = [("email", privacy.email_or_none(e)) for e in emails] + [("phone", privacy.phone_or_none(p)) for p in phones]
        return [hashlib.sha256(f"unit-test-key:{kind}:{value}".encode()).hexdigest() for kind, value in normal if value]

    async def add_suppressed(self, emails: list[str], phones: list[str], purposes: list[str]) -> None:
        self.suppressed |= {(d, p) for d in self.digests(emails, phones) for p in purposes}

    async def suppressed_purposes(self, emails: list[str], phones: list[str]) -> list[str]:
        digests = self.digests(emails, phones)
        return sorted({purpose for d, purpose in self.suppressed if d in digests})

    # ---- final disposition --------------------------------------------------------------

    async def erased_at(self, person_id) -> datetime | None:
        row = self.erased.get(person_id)
        return row["erased_at"] if row else None

    async def is_erased(self, person_id) -> bool:
        return person_id in self.erased

    def _delete_person_rows(self, person_id, tables: tuple[str, ...]) -> None:
        if "relationships" in tables:
            self.relationships = {k: v for k, v in self.relationships.items() if v["person_id"] != person_id}
        if "assignment_participants" in tables:
            self.participants = {k: v for k, v in self.participants.items() if k[1] != person_id}
        if "marketing_bans" in tables:
            self.bans = {b for b in self.bans if b[0] != person_id}
        if "field_sources" in tables:
            self.sources = {k: v for k, v in self.sources.items() if k[0] != person_id}

    async def message_keys_of(self, person_id) -> list[str]:
        ref = (self.persons.get(person_id) or {}).get("external_ref")
        return [*([ref] if ref else []), *(str(r["id"]) for r in self.access_requests.values()
                                           if r.get("person_id") == person_id)]

    async def contact_points_of(self, person_id) -> tuple[list[str], list[str]]:
        person = self.persons.get(person_id) or {}
        return sorted(person.get("emails") or []), sorted(person.get("phones") or [])

    async def erasure_decided(self, person_id) -> bool:
        return person_id in self.erasure_decisions

    async def erase_person(self, person_id, command_id) -> None:
        """The person row goes and its rows with it (ON DELETE CASCADE); only the id stays."""
        self.persons.pop(person_id, None)
        self._delete_person_rows(person_id, ("relationships", "assignment_participants", "marketing_bans",
                                             "field_sources"))
        await self.scrub_access_requests(person_id)
        self.erased.setdefault(person_id, dict(erased_at=self.now(), command_id=command_id))

    async def keep_marketing_data_only(self, person_id) -> None:
        self._delete_person_rows(person_id, ("relationships", "assignment_participants"))
        self.sources = {k: v for k, v in self.sources.items() if k[0] != person_id or k[1] in MARKETING_FIELDS}
        if person_id in self.persons:
            now = self.now()
            self.persons[person_id].update(
                expertise=None, other_contact={}, external_ref=None, purposes=["customer_relationship"],
                legal_basis="consent", lifecycle_state="marketing", state_changed_at=now, updated_at=now)

    # ---- access requests ----------------------------------------------------------------

    async def insert_access_request(self, request: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        row = dict(request, decision=None, decision_reason=None, decided_by=None, decided_at=None,
                   created_at=now, asked_at=now if request["status"] == "collecting" else None, fulfilled_at=None)
        self.access_requests[row["id"]] = row
        return copy.deepcopy(row)

    async def get_access_request(self, request_id, *, for_update: bool = False) -> dict[str, Any] | None:
        return copy.deepcopy(self.access_requests.get(request_id))

    async def store_report_part(self, request_id, service: str, items: list[dict[str, Any]]) -> bool:
        if request_id not in self.access_requests:
            raise ForeignKeyViolation("request_id")
        if (request_id, service) in self.report_parts:
            return False
        self.report_parts[(request_id, service)] = copy.deepcopy(items)
        return True

    async def insert_portability_export(self, export_id, person_id, requested_by, expected) -> dict[str, Any]:
        row = {"id": export_id, "person_id": person_id, "requested_by": requested_by, "created_at": self.now(),
               "expected_services": list(expected), "parts": {}, "ready_at": None}
        self.portability_exports[export_id] = row
        return copy.deepcopy(row)

    async def get_portability_export(self, export_id, *, for_update: bool = False) -> dict[str, Any] | None:
        return copy.deepcopy(self.portability_exports.get(export_id))

    async def store_portability_part(self, export_id, service: str, items: list[dict[str, Any]]) -> bool:
        row = self.portability_exports.get(export_id)
        if row is None or service in row["parts"]:
            return False
        row["parts"][service] = copy.deepcopy(items)
        if set(row["expected_services"]) <= set(row["parts"]):
            row["ready_at"] = self.now()
        return True

    async def answered_services(self, request_id) -> list[str]:
        return sorted(s for r, s in self.report_parts if r == request_id)

    async def mark_access_fulfilled(self, request_id) -> None:
        if request_id in self.access_requests:
            self.access_requests[request_id].update(status="fulfilled", fulfilled_at=self.now(), emails=[], phones=[])

    async def scrub_access_requests(self, person_id) -> None:
        for request_id, request in self.access_requests.items():
            if request["person_id"] == person_id:
                request.update(emails=[], phones=[], contact_digests=[], verification_notes=None)
                for (r, s) in self.report_parts:
                    if r == request_id:
                        self.report_parts[(r, s)] = []
