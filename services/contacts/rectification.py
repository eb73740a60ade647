"""Rectification (R14): a person (or staff on their behalf) asks for a correction; staff
approve or reject it with a reason; an approved change is applied, audited and published
as `contact-updated` with cause "rectification"."""
from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Depends, Request

from services.contacts import domain, requests, service, storage
from services.contacts.domain import State
from services.contacts.schemas import DecisionIn, PersonFields, RectificationIn, SelfRectificationIn, SelfUpdate
from shared.web.auth import Principal, Role, deny, write_audit, write_audit_many
from shared.errors import Conflict, InvalidInput, NotFound
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of
from services.contacts.selfservice import current_subject
from shared.web.paging import PageRequest, page, page_query

router = APIRouter(tags=["rectification"])
staff = require(Role.register_owner, Role.register_user)
PAGE = Depends(page_query(100, 500))


async def _record(request: Request, who: Principal, person_id: uuid.UUID, changes: SelfUpdate,
                  reason: str) -> dict:
    data = changes.model_dump(mode="json", exclude_unset=True)
    if not data:
        raise InvalidInput("changes: name at least one field to correct", fields={"changes": "empty"})
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await storage.get_person(conn, person_id)
        if person is None:
            raise NotFound("no such person")
        if who.role is not Role.subject and not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
            await deny(request, who, "rectification.request", person_id=person_id)
        rect_id = await storage.insert_rectification(conn, person_id, who.user, data, reason)
        # SPEC §10: the answer is due a month after receipt; the login or the staff member verified the identity.
        channel = "self_service" if who.role is Role.subject else "staff"
        await requests.record(conn, rect_id, "rectification", person_id, channel, identity_method=channel)
        await write_audit(conn, who, "rectification.request", person_id=person_id, target=f"rectification:{rect_id}",
                          details={"fields": sorted(data)})
    return {"id": rect_id, "person_id": person_id, "status": "pending"}


@router.post("/persons/{person_id}/rectifications", status_code=201,
             response_model=answers.Rectification, responses=errors(404))
async def request_rectification(person_id: uuid.UUID, body: RectificationIn, request: Request,
                                who: Principal = Depends(staff)) -> dict:
    return await _record(request, who, person_id, body.changes, body.reason)


@router.post("/me/rectifications", status_code=201,
             response_model=answers.Rectification, responses=errors(404))
async def request_own_rectification(body: SelfRectificationIn, request: Request,
                                    who: Principal = Depends(current_subject)) -> dict:
    return await _record(request, who, who.person_id, body.changes, body.reason)


@router.get("/me/rectifications", response_model=answers.OwnRectifications)
async def own_rectifications(request: Request, paging: PageRequest = PAGE,
                             who: Principal = Depends(current_subject)) -> dict:
    """R14, issue 19: the person follows their own requests: what they asked to change, the
    status, and the decision with its reason and date (the deciding staff member is not named).
    Newest first, a page at a time (issue 20)."""
    assert who.person_id is not None  # a subject token always names its person
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        rows = await storage.rectifications_of(conn, who.person_id, paging.limit + 1, paging.after(datetime, uuid.UUID))
        await write_audit(conn, who, "self.rectifications.read", person_id=who.person_id)
    rows, after = page(rows, paging.limit, lambda r: (r["created_at"], r["id"]))
    return {"next": after, "rectifications": [{
        "id": r["id"], "fields": sorted(r["changes"]), "changes": r["changes"], "reason": r["reason"],
        "status": r["status"], "decision_reason": r["decision_reason"], "created_at": r["created_at"],
        "decided_at": r["decided_at"]} for r in rows]}


@router.get("/rectifications",
            response_model=answers.Rectifications)
async def list_rectifications(request: Request, paging: PageRequest = PAGE, who: Principal = Depends(staff)) -> dict:
    """Pending requests, oldest first, a page at a time (issue 20): ids only, the content is read
    per request (and audited). Requests about persons this role may not see (passivated, R6) are
    left out, so a page may hold fewer than `limit`; `next` is null only on the last page. Each
    listed person id is an audited read (R10)."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        rows, after = page(await storage.pending_rectifications(conn, paging.limit + 1,
                                                                paging.after(datetime, uuid.UUID)),
                           paging.limit, lambda r: (r["created_at"], r["id"]))
        states = await storage.lifecycle_states(conn, list({r["person_id"] for r in rows}))
        visible = [r for r in rows if r["person_id"] in states
                   and domain.staff_may_read(who.role, State(states[r["person_id"]]))]
        await write_audit_many(conn, who, "rectification.list", [r["person_id"] for r in visible])
    return {"pending": visible, "next": after}


@router.get("/rectifications/{rect_id}",
            response_model=answers.Rectification, responses=errors(404))
async def read_rectification(rect_id: uuid.UUID, request: Request, who: Principal = Depends(staff)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        rect = await storage.get_rectification(conn, rect_id)
        if rect is None:
            raise NotFound("no such rectification request")
        person = await storage.get_person(conn, rect["person_id"])
        if person is not None and not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
            await deny(request, who, "rectification.read", person_id=rect["person_id"])
        await write_audit(conn, who, "rectification.read", person_id=rect["person_id"],
                          target=f"rectification:{rect_id}")
    return rect


@router.post("/rectifications/{rect_id}/decision",
             response_model=answers.Decided, responses=errors(404, 409))
async def decide_rectification(rect_id: uuid.UUID, body: DecisionIn, request: Request, who: Principal = Depends(staff)) -> dict:
    """Approve (apply and publish) or reject, always with a reason (R14)."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        rect = await storage.get_rectification(conn, rect_id, for_update=True)
        if rect is None:
            raise NotFound("no such rectification request")
        if rect["status"] != "pending":
            raise Conflict("the request has already been decided")
        person = await storage.get_person(conn, rect["person_id"], for_update=True)
        if person is None:
            raise NotFound("no such person")
        if not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
            await deny(request, who, "rectification.decide", person_id=person["id"])
        changed: list[str] = []
        if body.approve:
            changes = PersonFields.model_validate(rect["changes"]).changes()
            await service.check_organisation(runtime_of(request).unit_of_work(conn), changes.get("organisation_id"))
            source = "self_service" if rect["requested_by"].startswith("person:") else "staff"

            changed = await service.change_person(runtime_of(request).unit_of_work(conn), person, changes,
                                                  source=source, cause="rectification", rectification_id=rect_id)
        status = "approved" if body.approve else "rejected"
        await storage.decide_rectification(conn, rect_id, status, who.user, body.reason)
        await write_audit(conn, who, f"rectification.{status}", person_id=person["id"],
                          target=f"rectification:{rect_id}", details={"fields": changed})
    return {"id": rect_id, "status": status, "changed_fields": changed}
