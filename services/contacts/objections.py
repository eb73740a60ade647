"""Objections (GDPR Art. 21, R13) and erasure on request (Art. 17) as data-subject requests with
deadlines in the one request queue (SPEC §10, issue 14).

- An objection to direct marketing takes effect when received (Art. 21(3)): the ban is applied
  in the request's transaction (contacts' own bans at once, consent through `optout-registered`)
  and the request is due and answered on the day of receipt.
- A general objection to processing (Art. 21(1), with the person's grounds) and an erasure
  request get the one-month clock of access (`deadlines.Deadline`); the register owner answers
  with a decision and its reason. An erasure request is also answered when the person is erased.
- An erasure request decided `erase` publishes `erasure-requested` in the decision's transaction:
  retention makes the person's erasure due now (a legal hold in force still defers it, Art. 17(3)),
  its scheduler commands it and contacts erases as for any disposition.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import ConfigDict, Field, StringConstraints

from services.contacts import domain, request_storage, requests, storage
from services.contacts.domain import State
from services.contacts.answers import SubjectRequest
from services.contacts.schemas import Body
from services.contacts.selfservice import current_subject
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messaging.envelope import utcnow
from shared.messaging.events import ErasureRequested, OptoutRegistered, Purpose
from shared.web.auth import Principal, Role, deny, write_audit
from shared.web.http import require, runtime_of
from shared.web.openapi import errors, with_example

router = APIRouter(tags=["objections and erasure requests"])
staff = require(Role.register_owner, Role.register_user)
owner = require(Role.register_owner)
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ObjectionIn(Body):
    """`direct_marketing`: the purposes banned (all four if none named); `processing`: the
    grounds relating to the person's particular situation (Art. 21(1)) are required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"scope": "direct_marketing", "purposes": ["direct_advertising"]}))

    scope: Literal["direct_marketing", "processing"]
    purposes: list[Purpose] = Field(default_factory=list)
    grounds: Text | None = None


class ErasureRequestIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"grounds": "the assignment ended and I want my data erased"}))

    grounds: Text | None = None


class SubjectDecisionIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"decision": "upheld", "reason": "no compelling legitimate grounds override the objection"}))

    decision: Literal["upheld", "rejected", "erase", "refused"]
    reason: Text


DECISIONS = {"objection": ("upheld", "rejected"), "erasure": ("erase", "refused")}


async def _person_for(request: Request, conn: asyncpg.Connection, who: Principal, person_id: uuid.UUID,
                      action: str) -> dict[str, Any]:
    person = await storage.get_person(conn, person_id, for_update=True)
    if person is None:
        raise NotFound("no such person", fields={"person_id": "no such person"})
    if who.role is not Role.subject and not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
        await deny(request, who, action, person_id=person_id)
    return person


def _channel(who: Principal) -> str:
    return "self_service" if who.role is Role.subject else "staff"


async def _insert(conn: asyncpg.Connection, request_id: uuid.UUID, kind: str, person_id: uuid.UUID, who: Principal,
                  *, scope: str | None = None, purposes: list[str] | None = None,
                  grounds: str | None = None) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO subject_requests (id, kind, person_id, scope, purposes, grounds, requested_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        request_id, kind, person_id, scope, purposes or [], grounds, who.user)
    return dict(row)


async def record_objection(request: Request, who: Principal, person_id: uuid.UUID, body: ObjectionIn) -> dict:
    if body.scope == "processing" and body.grounds is None:
        raise InvalidInput("grounds: an objection to processing states the person's grounds (Art. 21(1))",
                           fields={"grounds": "required for scope processing"})
    if body.scope == "processing" and body.purposes:
        raise InvalidInput("purposes: name marketing purposes only with scope direct_marketing",
                           fields={"purposes": "only for scope direct_marketing"})
    runtime = runtime_of(request)
    request_id = uuid.uuid4()
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _person_for(request, conn, who, person_id, "objection.create")
        purposes = [p.value for p in body.purposes or list(Purpose)] if body.scope == "direct_marketing" else []
        row = await _insert(conn, request_id, "objection", person_id, who, scope=body.scope, purposes=purposes,
                            grounds=body.grounds)
        immediate = body.scope == "direct_marketing"
        deadline = await requests.record(conn, request_id, "objection", person_id, _channel(who),
                                         identity_method=_channel(who), received_at=row["created_at"],
                                         immediate=immediate)
        if immediate:  # Art. 21(3), R13: the ban takes effect when the objection is received
            await storage.add_bans(conn, person_id, purposes)
            await runtime.unit_of_work(conn).outbox.add(OptoutRegistered(
                person_id=person_id, purposes=[Purpose(p) for p in purposes], source=_channel(who),
                method="objection", actor=who.user))
            await conn.execute("UPDATE subject_requests SET decision = 'applied', decided_by = $2, decided_at = $3"
                               " WHERE id = $1", request_id, who.user, row["created_at"])
        await write_audit(conn, who, "objection.create", person_id=person_id, target=f"objection:{request_id}",
                          details={"scope": body.scope, "purposes": purposes})
        return await _describe(conn, request_id) | {"due_date": deadline["due_date"]}


async def record_erasure_request(request: Request, who: Principal, person_id: uuid.UUID,
                                 body: ErasureRequestIn) -> dict:
    runtime = runtime_of(request)
    request_id = uuid.uuid4()
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _person_for(request, conn, who, person_id, "erasure_request.create")
        row = await _insert(conn, request_id, "erasure", person_id, who, grounds=body.grounds)
        await requests.record(conn, request_id, "erasure", person_id, _channel(who),
                              identity_method=_channel(who), received_at=row["created_at"])
        await write_audit(conn, who, "erasure_request.create", person_id=person_id,
                          target=f"erasure_request:{request_id}")
        return await _describe(conn, request_id)


async def _describe(conn: asyncpg.Connection, request_id: uuid.UUID) -> dict[str, Any]:
    """The request with its deadline and status from the queue."""
    row = await conn.fetchrow("SELECT id, kind, person_id, scope, purposes, grounds, requested_by, created_at,"
                              " decision, decision_reason, decided_by, decided_at FROM subject_requests WHERE id = $1",
                              request_id)
    queued = await request_storage.get_request(conn, request_id)
    assert row is not None and queued is not None
    return {**dict(row), **{k: queued[k] for k in ("received_on", "due_date", "extended_until", "answer_by",
                                                   "answered_at", "status")}}


async def decide(request: Request, who: Principal, request_id: uuid.UUID, kind: str, body: SubjectDecisionIn) -> dict:
    if body.decision not in DECISIONS[kind]:
        raise InvalidInput(f"decision: a {kind} request is answered with {' or '.join(DECISIONS[kind])}",
                           fields={"decision": f"one of {', '.join(DECISIONS[kind])}"})
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT kind, person_id, decision FROM subject_requests WHERE id = $1 FOR UPDATE",
                                  request_id)
        if row is None or row["kind"] != kind:
            raise NotFound(f"no such {kind} request")
        if row["decision"] is not None:
            raise Conflict("the request is already answered", fields={"decision": row["decision"]})
        await conn.execute("UPDATE subject_requests SET decision = $2, decision_reason = $3, decided_by = $4,"
                           " decided_at = $5 WHERE id = $1", request_id, body.decision, body.reason, who.user,
                           utcnow())
        if body.decision == "erase":  # Art. 17, issue 14: retention makes the erasure due now
            await runtime_of(request).unit_of_work(conn).outbox.add(
                ErasureRequested(person_id=row["person_id"], request_id=request_id))
        await write_audit(conn, who, f"{kind}_request.{body.decision}", person_id=row["person_id"],
                          target=f"{kind}_request:{request_id}")
        return await _describe(conn, request_id)


@router.post("/persons/{person_id}/objections", status_code=201, response_model=SubjectRequest, responses=errors(404, 422))
async def object_for(person_id: uuid.UUID, body: ObjectionIn, request: Request, who: Principal = Depends(staff)) -> dict:
    """Staff record an objection the person made by phone, letter or in person (R13, Art. 21)."""
    return await record_objection(request, who, person_id, body)


@router.post("/me/objections", status_code=201, response_model=SubjectRequest, responses=errors(404, 422))
async def object_myself(body: ObjectionIn, request: Request, who: Principal = Depends(current_subject)) -> dict:
    assert who.person_id is not None  # a subject token always names its person
    return await record_objection(request, who, who.person_id, body)


@router.post("/objections/{request_id}/decision", response_model=SubjectRequest, responses=errors(404, 409, 422))
async def decide_objection(request_id: uuid.UUID, body: SubjectDecisionIn, request: Request,
                           who: Principal = Depends(owner)) -> dict:
    """A general objection is upheld (processing on legitimate interest stops) or rejected with
    the compelling grounds (Art. 21(1)); the reason is recorded."""
    return await decide(request, who, request_id, "objection", body)


@router.post("/persons/{person_id}/erasure-requests", status_code=201, response_model=SubjectRequest, responses=errors(404))
async def erasure_for(person_id: uuid.UUID, body: ErasureRequestIn, request: Request,
                      who: Principal = Depends(owner)) -> dict:
    """The register owner records a request for erasure (Art. 17) made in writing or in person."""
    return await record_erasure_request(request, who, person_id, body)


@router.post("/me/erasure-requests", status_code=201, response_model=SubjectRequest, responses=errors(404))
async def erasure_myself(body: ErasureRequestIn, request: Request, who: Principal = Depends(current_subject)) -> dict:
    assert who.person_id is not None  # a subject token always names its person
    return await record_erasure_request(request, who, who.person_id, body)


@router.post("/erasure-requests/{request_id}/decision", response_model=SubjectRequest, responses=errors(404, 409, 422))
async def decide_erasure(request_id: uuid.UUID, body: SubjectDecisionIn, request: Request,
                         who: Principal = Depends(owner)) -> dict:
    """`erase` or `refused` with the reason (Art. 17(3)); answered too when the person is erased."""
    return await decide(request, who, request_id, "erasure", body)
