"""Right of access (R12): staff record a verified request (signed letter, in person) or a
self-service user asks for their own; contacts publishes `access-requested`, keeps its own
slice, collects every other service's `access-report-part`, and serves one report (JSON, HTML
in Finnish or English). One request within twelve months is free; a further one waits for
the register owner's decision. Every read of a report is audit-logged (R10).
"""
from __future__ import annotations

from pydantic import ConfigDict
from shared.web.openapi import with_example

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import StringConstraints

from services.contacts import access_report, domain, portability, processors, request_storage, requests, storage
from services.contacts.report_html import render_html
from services.contacts.schemas import Body, Emails, Phones
from services.contacts.settings import contacts_settings
from shared.web.auth import Principal, Role, write_audit
from shared.messaging.handling import EventContext
from shared.messaging.envelope import utcnow
from shared.errors import Conflict, InvalidInput, NotFound, Rejected
from shared.messaging.events import AccessReportPart, AccessRequested
from services.contacts.selfservice import current_subject
from services.contacts import answers
from shared.web.openapi import errors, media
from shared.web.http import require, runtime_of
from shared.logging import get_logger
from shared.messaging.outbox import Outbox
from shared.privacy.keystore import KeyStore
from shared.messaging.topics import topic
from shared.web.paging import PageRequest, page, page_query

log = get_logger(__name__)
router = APIRouter(tags=["access requests"])
owner = require(Role.register_owner)
owner_or_subject = require(Role.register_owner, Role.subject)
# Every service that answers `access-requested` (the catalogue's consumers): the report waits for them.
ANSWERING = tuple(sorted(topic("access-requested").consumers))
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Notes = Annotated[str, StringConstraints(max_length=1000)]
CODE_CHANNELS = ("email", "phone")  # identity verified by a one-time code to the person's own contact points


class AccessRequestIn(Body):
    """A request received in writing (signed) or in person; `notes` say how the identity was
    checked (document type, not its number: no personal values)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"person_id": "0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b",
        "emails": [], "phones": [], "verification": "signed_letter", "verified_by": "owner", "notes": "passport checked"}))

    person_id: uuid.UUID | None = None
    emails: Emails = []
    phones: Phones = []
    verification: Literal["signed_letter", "in_person", "email", "phone"]
    verified_by: Short
    notes: Notes | None = None


class AccessDecisionIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"decision": "waive", "reason": "first request this year"}))

    decision: Literal["charge", "waive", "refuse"]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


# ---- recording a request ------------------------------------------------------------------

async def _subject_of(conn: asyncpg.Connection, person_id: uuid.UUID | None, emails: list[str],
                      phones: list[str]) -> tuple[uuid.UUID | None, dict[str, Any] | None]:
    """Whom the request is about: the named person (live or erased), or the one live person
    holding the contact points; contact points of nobody still reach consent's suppression list."""
    if person_id is not None:
        person = await storage.get_person(conn, person_id)
        if person is None and not await storage.is_erased(conn, person_id):
            raise NotFound("no such person", fields={"person_id": "no such person"})
        return person_id, person
    found = await storage.persons_with_contact_points(conn, emails, phones)
    if len(found) > 1:
        raise Conflict("several persons hold these contact points: name the person",
                       fields={"person_id": "required: the contact points match several persons"})
    if not found:
        return None, None
    return found[0], await storage.get_person(conn, found[0])


async def own_slice(conn: asyncpg.Connection, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything contacts holds about the person (R12), read in the request's transaction."""
    items: list[dict[str, Any]] = []
    if request["person_id"] is not None:
        everything = await storage.person_everything(conn, request["person_id"])
        if everything is not None:
            items += access_report.person_items(everything)
    points = [*request["emails"], *request["phones"]]
    purposes = {e: await storage.suppressed_purposes(conn, [e], []) for e in request["emails"]}
    purposes |= {p: await storage.suppressed_purposes(conn, [], [p]) for p in request["phones"]}
    items += access_report.suppression_items(points, purposes)
    earlier = await storage.earlier_access_requests(conn, request["person_id"], request["contact_digests"])
    items += access_report.earlier_request_items([r for r in earlier if r["id"] != request["id"]])
    items += access_report.processor_items(await processors.all_processors(conn))
    return items


async def ask_services(conn: asyncpg.Connection, request: dict[str, Any], keys: KeyStore | None) -> None:
    """Store contacts' own slice and ask every other service for theirs (through the outbox,
    the contact points sealed under `keys`, issue 15)."""
    await storage.store_report_part(conn, request["id"], access_report.SERVICE, await own_slice(conn, request))
    await Outbox(conn, access_report.SERVICE, keys=keys).add(AccessRequested(
        request_id=request["id"], person_id=request["person_id"], emails=request["emails"], phones=request["phones"]))


async def record_request(conn: asyncpg.Connection, who: Principal, *, person_id: uuid.UUID | None, emails: list[str],
                         phones: list[str], channel: str, verified_by: str, notes: str | None,
                         keys: KeyStore | None) -> dict[str, Any]:
    person_id, person = await _subject_of(conn, person_id, emails, phones)
    if person is not None:  # consent finds suppression records by every contact point the person has
        emails = domain.unique([*emails, *person["emails"]])
        phones = domain.unique([*phones, *person["phones"]])
    digests = await storage.contact_digests(conn, emails, phones)
    earlier = await storage.earlier_access_requests(conn, person_id, digests)
    because = access_report.chargeable_because(earlier, utcnow())
    chargeable = because is not None
    unverified = channel in CODE_CHANNELS  # SPEC §10: nothing is collected before the code comes back
    request = await storage.insert_access_request(conn, {
        "id": uuid.uuid4(), "person_id": person_id, "emails": emails, "phones": phones, "contact_digests": digests,
        "channel": channel, "verified_by": verified_by, "verification_notes": notes, "requested_by": who.user,
        "chargeable": chargeable, "status": "awaiting_identity" if unverified else "awaiting_decision" if chargeable else "collecting",
        "expected_services": [access_report.SERVICE, *ANSWERING]})
    if because is not None:  # SPEC §10: the decision names the earlier free request
        await request_storage.record_charge_reason(conn, request["id"], because["request_id"], because["received_at"])
    # SPEC §10: answered within a month of receipt; these channels verified the identity on receipt.
    await requests.record(conn, request["id"], "access", person_id, channel,
                          identity_method=None if unverified else channel, received_at=request["created_at"])
    if not chargeable and not unverified:
        await ask_services(conn, request, keys)
    await write_audit(conn, who, "access_request.create", person_id=person_id, target=f"access_request:{request['id']}",
                      details={"channel": channel, "chargeable": chargeable})
    log.info("access_requested", request_id=str(request["id"]), person_id=str(person_id) if person_id else None,
             chargeable=chargeable)
    return request


async def describe(conn: asyncpg.Connection, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """The request's state: which services answered, which are missing, whether they are late.
    A new request is described after its transaction commits: the commit lets the relay ask the
    services, and nothing here needs to hold it back."""
    answered = await storage.answered_services(conn, request["id"])
    keys = ("id", "person_id", "channel", "verified_by", "chargeable", "status", "decision", "decision_reason",
            "decided_by", "decided_at", "created_at", "asked_at", "fulfilled_at")
    because = await request_storage.charge_reason(conn, request["id"])
    return {**{k: request[k] for k in keys}, "chargeable_because": because, "expected": request["expected_services"],
            **access_report.progress(request["expected_services"], answered, request["asked_at"], utcnow(),
                                     timeout_s)}


@router.post("/access-requests", status_code=201,
             response_model=answers.AccessRequest, responses=errors(404))
async def create_access_request(body: AccessRequestIn, request: Request, who: Principal = Depends(owner)) -> dict:
    """R12: the register owner records a signed or in-person request and how identity was verified."""
    if body.person_id is None and not body.emails and not body.phones:
        raise InvalidInput("person_id, emails or phones is required",
                           fields={"person_id": "name the person, or give emails or phones"})
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        async with conn.transaction():
            req = await record_request(conn, who, person_id=body.person_id, emails=body.emails, phones=body.phones,
                                       channel=body.verification, verified_by=body.verified_by, notes=body.notes,
                                       keys=runtime.keys)
            if body.verification in CODE_CHANNELS:
                if req["person_id"] is None or await storage.get_person(conn, req["person_id"]) is None:
                    raise InvalidInput("a code can only go to a person in the register",
                                       fields={"verification": "email or phone needs a person the register holds: "
                                                               "verify by signed letter or in person"})
                await requests.send_code(runtime.unit_of_work(conn), conn, req["id"], req["person_id"],
                                         body.verification, who)
        return await describe(conn, req, contacts_settings(runtime).contacts_access_report_timeout_s)


@router.post("/me/access-requests", status_code=201,
             response_model=answers.AccessRequest, responses=errors(404))
async def create_own_access_request(request: Request, who: Principal = Depends(current_subject)) -> dict:
    """R12: an authenticated self-service user asks for their own data (R11 credentials verify them)."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        async with conn.transaction():
            if await storage.get_person(conn, who.person_id) is None:
                raise NotFound("no such person")
            req = await record_request(conn, who, person_id=who.person_id, emails=[], phones=[],
                                       channel="self_service", verified_by=who.user, notes=None, keys=runtime.keys)
        return await describe(conn, req, contacts_settings(runtime).contacts_access_report_timeout_s)


@router.get("/access-requests",
            response_model=answers.AccessRequests)
async def list_access_requests(request: Request, _who: Principal = Depends(owner),
                               status: Literal["awaiting_identity", "awaiting_decision", "collecting", "fulfilled",
                                               "refused", "any"] = "awaiting_decision",
                               person_id: uuid.UUID | None = None,
                               paging: PageRequest = Depends(page_query(100, 500))) -> dict:
    """The register owner's queue (ids only), oldest first, a page at a time (issue 20): chargeable
    requests waiting for a decision by default; with `person_id`, that person's requests
    (`status=any`: in every status, for their page, issue 19)."""
    pool = runtime_of(request).pool
    rows, after = page(await storage.access_requests_by_status(
        pool, None if status == "any" else status, paging.limit + 1, person_id=person_id,
        after=paging.after(datetime, uuid.UUID)), paging.limit, lambda r: (r["created_at"], r["id"]))
    reasons = await request_storage.charge_reasons(pool, [r["id"] for r in rows])
    return {"access_requests": [{**r, "chargeable_because": reasons.get(r["id"])} for r in rows], "next": after}


async def readable_request(conn: asyncpg.Connection, who: Principal, request_id: uuid.UUID, *,
                           for_update: bool = False) -> dict[str, Any]:
    """The owner sees every request; a person only their own (404 otherwise: not visible)."""
    req = await storage.get_access_request(conn, request_id, for_update=for_update)
    if req is None or (who.role is Role.subject and req["person_id"] != who.person_id):
        raise NotFound("no such access request")
    return req


@router.get("/access-requests/{request_id}",
            response_model=answers.AccessRequest, responses=errors(404))
async def read_access_request(request_id: uuid.UUID, request: Request,
                              who: Principal = Depends(owner_or_subject)) -> dict:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        req = await readable_request(conn, who, request_id)
        await write_audit(conn, who, "access_request.read", person_id=req["person_id"],
                          target=f"access_request:{request_id}")
        return await describe(conn, req, contacts_settings(runtime).contacts_access_report_timeout_s)


@router.post("/access-requests/{request_id}/decision",
             response_model=answers.AccessRequest, responses=errors(404, 409))
async def decide_access_request(request_id: uuid.UUID, body: AccessDecisionIn, request: Request,
                                who: Principal = Depends(owner)) -> dict:
    """R12: a chargeable request is answered once the owner charges or waives the fee, or refused."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        req = await readable_request(conn, who, request_id, for_update=True)
        if req["status"] != "awaiting_decision":
            raise Conflict("the request is not waiting for a decision", fields={"status": req["status"]})
        status = "refused" if body.decision == "refuse" else "collecting"
        await storage.decide_access_request(conn, request_id, body.decision, body.reason, who.user, status)
        req = await storage.get_access_request(conn, request_id)
        if status == "collecting":
            await ask_services(conn, req, runtime.keys)
        await write_audit(conn, who, f"access_request.{body.decision}", person_id=req["person_id"],
                          target=f"access_request:{request_id}")
        return await describe(conn, req, contacts_settings(runtime).contacts_access_report_timeout_s)


@router.get("/access-requests/{request_id}/report",
            response_model=answers.AccessReport, responses=errors(404, 409) | {200: media({"text/html": "<!doctype html><html lang=\"fi\">...</html>"})})
async def read_report(request_id: uuid.UUID, request: Request, who: Principal = Depends(owner_or_subject),
                      format: Literal["json", "html"] = Query("json"),
                      lang: Literal["fi", "en"] = Query("fi")) -> dict | HTMLResponse:
    """The assembled report; 409 naming the missing services while it waits. Every read is audited."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        req = await readable_request(conn, who, request_id)
        if req["status"] != "fulfilled":
            state = await describe(conn, req, contacts_settings(runtime).contacts_access_report_timeout_s)
            raise Conflict(f"the report is not assembled: status {req['status']}",
                           fields={"status": req["status"], "missing": ",".join(state["missing"]),
                                   "late": ",".join(state["late_services"])})
        report = access_report.assemble(req, await storage.report_parts(conn, request_id))
        await write_audit(conn, who, "access_report.read", person_id=req["person_id"],
                          target=f"access_request:{request_id}", details={"format": format, "lang": lang})
    if format == "html":
        return HTMLResponse(render_html(report, lang))
    return report


# ---- the other services' answers ------------------------------------------------------------

async def on_access_report_part(ctx: EventContext[AccessReportPart]) -> None:
    """Store one service's slice; the last one marks the request fulfilled (R12)."""
    p = ctx.payload
    if p.purpose == "portability":  # Art. 20, issue 14: a part of a portability export
        return await portability.on_portability_part(ctx)
    req = await ctx.store.get_access_request(p.request_id, for_update=True)
    if req is None:
        raise Rejected("request_id: no such access request")
    if p.service not in req["expected_services"] or p.service == access_report.SERVICE:
        raise Rejected("service: not asked to answer this access request")
    items = p.items
    if req["person_id"] is not None:
        erased_at = await ctx.store.erased_at(req["person_id"])
        if erased_at is not None and erased_at > req["created_at"]:
            items = []  # R7: an answer arriving after the person was erased keeps nothing of them
    if not await ctx.store.store_report_part(p.request_id, p.service, items):
        return
    answered = await ctx.store.answered_services(p.request_id)
    if req["status"] == "collecting" and access_report.is_complete(req["expected_services"], answered):
        await ctx.store.mark_access_fulfilled(p.request_id)
        log.info("access_report_assembled", request_id=str(p.request_id))
