"""Staff HTTP routes of the contacts service (roles register_user, register_owner).

Every read and change of personal data is audit-logged in the same transaction (R10);
passivated persons are visible to the register owner only, and a refused read is audited (R6).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Iterator

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from services.contacts import domain, service, storage
from services.contacts.domain import State
from services.contacts.schemas import (AssignmentIn, EndIn, OrganisationIn, PersonIn, PersonUpdate,
                                       RelationshipIn, ServiceRecordIn)
from services.contacts.rectification import router as rectification_router
from services.contacts.selfservice import router as self_router
from services.contacts.settings import contacts_settings
from shared.web.auth import Principal, Role, deny, write_audit, write_audit_many
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messaging.events import AssignmentEnded, AssignmentStarted, Purpose, RelationshipEnded, RelationshipStarted
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of
from shared.web.paging import PageRequest, page, page_query

router = APIRouter()
router.include_router(self_router)
router.include_router(rectification_router)
staff = require(Role.register_owner, Role.register_user)
marketing = require(Role.marketing, Role.register_owner)


async def visible_person(request: Request, conn: asyncpg.Connection, principal: Principal, person_id: uuid.UUID,
                         action: str, *, for_update: bool = False) -> dict[str, Any]:
    """The person if this staff member may see them: 404 if absent or erased, 403 (audited) if passive."""
    person = await storage.get_person(conn, person_id, for_update=for_update)
    if person is None:
        raise NotFound("no such person")
    if not domain.staff_may_read(principal.role, State(person["lifecycle_state"])):
        await deny(request, principal, action, person_id=person_id)
    return person


# ---- organisations (R3) -----------------------------------------------------------------

@router.post("/organisations", status_code=201, tags=["organisations"],
             response_model=answers.Organisation, responses=errors(409))
async def create_organisation(body: OrganisationIn, request: Request, who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        try:
            org_id = await storage.insert_organisation(conn, body.model_dump(), body.source.value)
        except asyncpg.UniqueViolationError:
            raise Conflict("an organisation with this business_id exists",
                           fields={"business_id": "already registered"}) from None
        await write_audit(conn, who, "organisation.create", target=f"organisation:{org_id}")
        return await storage.get_organisation(conn, org_id)


@router.get("/organisations/{org_id}", tags=["organisations"],
            response_model=answers.Organisation, responses=errors(404))
async def read_organisation(org_id: uuid.UUID, request: Request, _who: Principal = Depends(staff)) -> dict:
    org = await storage.get_organisation(runtime_of(request).pool, org_id)
    if org is None:
        raise NotFound("no such organisation")
    return org


# ---- persons (R1-R4, R10) ---------------------------------------------------------------

@router.post("/persons", status_code=201, tags=["persons"],
             response_model=answers.PersonRecord, responses=errors(404, 422))
async def create_person(body: PersonIn, request: Request, who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await service.check_organisation(runtime_of(request).unit_of_work(conn), body.organisation_id)
        fields = body.model_dump(exclude={"legal_basis", "purposes", "source"})
        person_id = await service.register_person(
            runtime_of(request).unit_of_work(conn), fields, source=body.source.value, legal_basis=body.legal_basis.value,
            purposes=[p.value for p in body.purposes])
        await write_audit(conn, who, "person.create", person_id=person_id)
        return await storage.person_everything(conn, person_id)


@router.get("/persons", tags=["persons"],
            response_model=answers.Persons)
async def search_persons(request: Request, who: Principal = Depends(staff),
                         name: str | None = Query(None, max_length=200),
                         email: str | None = Query(None, max_length=254),
                         phone: str | None = Query(None, max_length=40),
                         organisation_id: uuid.UUID | None = None,
                         paging: PageRequest = Depends(page_query(100, 1000))) -> dict:
    """Search, in the order persons were registered, a page at a time (issue 20; at most
    `search_limit` a page); every person returned is a read (R10). Passive persons only for the
    owner (R6)."""
    fields = {}
    try:
        email = domain.normalise_email(email) if email else None
    except ValueError as exc:
        fields["email"] = str(exc)
    try:
        phone = domain.normalise_phone(phone) if phone else None
    except ValueError as exc:
        fields["phone"] = str(exc)
    if fields:
        raise InvalidInput("invalid search", fields=fields)
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        limit = min(paging.limit, contacts_settings(runtime).search_limit)
        found, after = page(await storage.search_persons(
            conn, name=name, email=email, phone=phone, organisation_id=organisation_id,
            include_passive=who.role is Role.register_owner, limit=limit + 1,
            after=paging.after(datetime, uuid.UUID)), limit, lambda r: (r["created_at"], r["id"]))
        for person in found:
            await write_audit(conn, who, "person.search", person_id=person["id"])
    return {"persons": found, "next": after}


@router.get("/persons/{person_id}", tags=["persons"],
            response_model=answers.PersonRecord, responses=errors(404))
async def read_person(person_id: uuid.UUID, request: Request, who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await visible_person(request, conn, who, person_id, "person.read")
        await write_audit(conn, who, "person.read", person_id=person_id)
        return await storage.person_everything(conn, person_id)


@router.patch("/persons/{person_id}", tags=["persons"],
              response_model=answers.PersonRecord, responses=errors(404))
async def update_person(person_id: uuid.UUID, body: PersonUpdate, request: Request,
                        who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await visible_person(request, conn, who, person_id, "person.update", for_update=True)
        changes = body.changes()
        await service.check_organisation(runtime_of(request).unit_of_work(conn), changes.get("organisation_id"))
        changed = await service.change_person(runtime_of(request).unit_of_work(conn), person, changes,
                                              source=body.source.value, cause="update")
        await write_audit(conn, who, "person.update", person_id=person_id, details={"fields": changed})
        return await storage.person_everything(conn, person_id)


@router.post("/persons/{person_id}/records", status_code=201, tags=["persons"],
             response_model=answers.Created, responses=errors(404))
async def add_service_record(person_id: uuid.UUID, body: ServiceRecordIn, request: Request,
                             who: Principal = Depends(staff)) -> dict:
    """Orders, approvals, cancellations and interactions (R3), each with purposes and source."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await visible_person(request, conn, who, person_id, "record.create")
        record = {**body.model_dump(), "occurred_at": service.at_or_now(body.occurred_at),
                  "purposes": [p.value for p in body.purposes]}
        record_id = await storage.insert_service_record(conn, person_id, record, body.source.value)
        await write_audit(conn, who, "record.create", person_id=person_id, target=f"record:{record_id}")
    return {"id": record_id}


# ---- relationships and assignments (R5, R6, P2) -----------------------------------------

@router.post("/persons/{person_id}/relationships", status_code=201, tags=["relationships"],
             response_model=answers.Connection, responses=errors(404))
async def start_relationship(person_id: uuid.UUID, body: RelationshipIn, request: Request,
                             who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await visible_person(request, conn, who, person_id, "relationship.start", for_update=True)
        await service.check_organisation(runtime_of(request).unit_of_work(conn), body.organisation_id)
        rel_id, started = uuid.uuid4(), service.at_or_now(body.started_at)
        await storage.insert_relationship(conn, rel_id, person_id, body.organisation_id, body.kind, started, "staff")
        state = await service.connection_started(runtime_of(request).unit_of_work(conn), person_id, body.kind)
        await runtime_of(request).unit_of_work(conn).outbox.add(RelationshipStarted(person_id=person_id, relationship_id=rel_id,
                                                  organisation_id=body.organisation_id, kind=body.kind,
                                                  started_at=started))
        await write_audit(conn, who, "relationship.start", person_id=person_id, target=f"relationship:{rel_id}")
    return {"id": rel_id, "person_id": person_id, "lifecycle_state": state.value}


@router.post("/relationships/{rel_id}/end", tags=["relationships"],
             response_model=answers.Connection, responses=errors(404, 409))
async def end_relationship(rel_id: uuid.UUID, body: EndIn, request: Request, who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        rel = await storage.get_relationship(conn, rel_id)
        if rel is None:
            raise NotFound("no such relationship")
        await visible_person(request, conn, who, rel["person_id"], "relationship.end", for_update=True)
        ended = service.at_or_now(body.ended_at)
        if not await storage.end_relationship(conn, rel_id, ended):
            raise Conflict("the relationship has already ended")
        state = await service.connection_ended(runtime_of(request).unit_of_work(conn), rel["person_id"])
        await runtime_of(request).unit_of_work(conn).outbox.add(RelationshipEnded(person_id=rel["person_id"], relationship_id=rel_id, ended_at=ended))
        await write_audit(conn, who, "relationship.end", person_id=rel["person_id"], target=f"relationship:{rel_id}")
    return {"id": rel_id, "person_id": rel["person_id"], "lifecycle_state": state.value}


@router.post("/assignments", status_code=201, tags=["assignments"],
             response_model=answers.Assignment, responses=errors(404))
async def start_assignment(body: AssignmentIn, request: Request, who: Principal = Depends(staff)) -> dict:
    """One assignment-started per participant (keyed by person, as other systems publish it)."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        missing = {f"participants.{i}": "no such person" for i, pid in enumerate(body.participants)
                   if await storage.get_person(conn, pid) is None}
        if missing:
            raise InvalidInput("participants: unknown person", fields=missing)
        for pid in body.participants:
            await visible_person(request, conn, who, pid, "assignment.start", for_update=True)
        assignment_id, started = uuid.uuid4(), service.at_or_now(body.started_at)
        await storage.ensure_assignment(conn, assignment_id, body.given_by, body.title, started, "staff")
        for pid in domain.unique(body.participants):
            await storage.add_participant(conn, assignment_id, pid, started)
            await service.connection_started(runtime_of(request).unit_of_work(conn), pid, "assignment")
            await runtime_of(request).unit_of_work(conn).outbox.add(AssignmentStarted(person_id=pid, assignment_id=assignment_id, given_by=body.given_by,
                                                    started_at=started))
            await write_audit(conn, who, "assignment.start", person_id=pid, target=f"assignment:{assignment_id}")
        return await storage.get_assignment(conn, assignment_id)


@router.get("/assignments/{assignment_id}", tags=["assignments"],
            response_model=answers.Assignment, responses=errors(404))
async def read_assignment(assignment_id: uuid.UUID, request: Request, who: Principal = Depends(staff)) -> dict:
    """Participants this role may not see (passivated, R6) are left out; each one listed is an
    audited read (R10). Not paged: one assignment is a record, given whole with its participants
    (issue 20)."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        assignment = await storage.get_assignment(conn, assignment_id)
        if assignment is None:
            raise NotFound("no such assignment")
        states = await storage.lifecycle_states(conn, [p["person_id"] for p in assignment["participants"]])
        assignment["participants"] = [
            p for p in assignment["participants"]
            if p["person_id"] in states and domain.staff_may_read(who.role, State(states[p["person_id"]]))]
        await write_audit_many(conn, who, "assignment.read", [p["person_id"] for p in assignment["participants"]],
                               target=f"assignment:{assignment_id}")
    return assignment


@router.post("/assignments/{assignment_id}/end", tags=["assignments"],
             response_model=answers.Assignment, responses=errors(404))
async def end_assignment(assignment_id: uuid.UUID, body: EndIn, request: Request,
                         who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        assignment = await storage.get_assignment(conn, assignment_id)
        if assignment is None:
            raise NotFound("no such assignment")
        ended = service.at_or_now(body.ended_at)
        for part in assignment["participants"]:
            if part["ended_at"] is not None:
                continue
            pid = part["person_id"]
            await visible_person(request, conn, who, pid, "assignment.end", for_update=True)
            await storage.end_participation(conn, assignment_id, pid, ended)
            await service.connection_ended(runtime_of(request).unit_of_work(conn), pid)
            await runtime_of(request).unit_of_work(conn).outbox.add(AssignmentEnded(person_id=pid, assignment_id=assignment_id, ended_at=ended))
            await write_audit(conn, who, "assignment.end", person_id=pid, target=f"assignment:{assignment_id}")
        return await storage.get_assignment(conn, assignment_id)


# ---- marketing export (R1, R7, R13) -----------------------------------------------------

EXPORT_FIELDS = ("id", "first_name", "last_name", "title", "emails", "phones", "organisation_id",
                 "organisation_name", "lifecycle_state")


@router.get("/marketing/export", tags=["marketing"],
            response_model=answers.MarketingExport)
async def marketing_export(request: Request, who: Principal = Depends(marketing),
                           purpose: Purpose | None = None,
                           paging: PageRequest = Depends(page_query(500, 10_000))) -> StreamingResponse:
    """Persons marketing may contact for `purpose` (any purpose when absent): everyone with a
    matching ban is left out, so a page may hold fewer than `limit`. Paged by person id (at most
    `export_page_max` a page; `cursor` = the previous page's `next`, null on the last page, issue
    20) and streamed; each exported person is an audited read (R10)."""
    runtime = runtime_of(request)
    page_max = contacts_settings(runtime).export_page_max
    if paging.limit > page_max:
        raise InvalidInput(f"limit: at most {page_max}", fields={"limit": f"at most {page_max}"})
    after = paging.after(uuid.UUID)
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows, next_cursor = page(await storage.marketing_candidates(conn, after=after[0] if after else None,
                                                                    limit=paging.limit + 1),
                                 paging.limit, lambda r: (r["id"],))
        persons = [{k: r[k] for k in EXPORT_FIELDS} for r in rows
                   if domain.may_market(State(r["lifecycle_state"]), r["purposes"], set(r["bans"]), purpose)]
        await write_audit_many(conn, who, "marketing.export", [p["id"] for p in persons],
                               target=f"purpose:{purpose.value if purpose else 'any'}")

    def body() -> Iterator[bytes]:
        yield b'{"purpose":' + json.dumps(purpose.value if purpose else None).encode()
        yield b',"next":' + json.dumps(next_cursor).encode() + b',"persons":['
        for i, person in enumerate(persons):
            yield (b"," if i else b"") + json.dumps(jsonable_encoder(person)).encode()
        yield b"]}"

    return StreamingResponse(body(), media_type="application/json")


@router.get("/audit/persons/{person_id}", tags=["audit"],
            response_model=answers.PersonAudit)
async def person_audit(person_id: uuid.UUID, request: Request, paging: PageRequest = Depends(page_query(100, 1000)),
                       _who: Principal = Depends(require(Role.register_owner))) -> dict:
    """R10: who read or changed this person's data, and when (register owner only), the newest
    first, a page at a time by (time, entry id) (issue 20)."""
    after = paging.after(datetime, int)
    rows = await runtime_of(request).pool.fetch(
        "SELECT id, at, actor, role, action, target, outcome, details FROM audit_log WHERE person_id = $1"
        " AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3::bigint)) ORDER BY at DESC, id DESC LIMIT $4",
        person_id, *(after or (None, None)), paging.limit + 1)
    rows, next_cursor = page(rows, paging.limit, lambda r: (r["at"], r["id"]))
    return {"person_id": person_id, "next": next_cursor,
            "entries": [{k: v for k, v in r.items() if k != "id"} for r in rows]}
