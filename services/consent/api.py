"""HTTP routes of the consent service: checks (single and batch), permissions and bans per
person, self-service preferences, staff opt-outs, and the marketing register (R8, R9, R13)."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.consent import storage
from services.consent.subjects import require_live
from services.consent.checks import check_batch, check_one
from services.consent.domain import Decision, Status, may_lift_ban
from services.consent.handlers import hasher_for, register_ban
from services.consent.settings import consent_settings
from services.consent.storage import Evidence
from shared.web.auth import Principal, Role, audit_denial, deny, is_fresh, write_audit
from shared.web.ratelimit import RateLimited, TokenBuckets
from shared.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from shared.messaging.events import Channel, ConsentGranted, ConsentWithdrawn, OptoutRegistered, Purpose
from shared.web.http import require, runtime_of
from shared.privacy import client_network, email_or_none, phone_or_none
from shared.web.openapi import errors, with_example
from shared.web.paging import PageRequest, page, page_query
from services.consent.schemas import (BATCH_REQUEST, CHANGE_REQUEST, CHECK_REQUEST, OPTOUT_REQUEST, BatchOut, ChangeOut,
                                      CheckOut, MarketingRegister, OptoutOut, PersonConsents)

router = APIRouter(tags=["consent"])
STAFF = (Role.register_owner, Role.register_user)
HISTORY_PAGE = Depends(page_query(100, 1000))
CHECKERS = (Role.register_owner, Role.register_user, Role.marketing, Role.service)
# Roles that may learn anything about a passivated person (R6): the owner, and the company's
# systems (which honour bans for every person).
SEES_PASSIVE = (Role.register_owner, Role.service)
RESTRICTED = {"allowed": False, "reason": "restricted"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(CHECK_REQUEST))

    purpose: Purpose
    channel: Channel
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    person_id: uuid.UUID | None = None


class BatchCheckRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(BATCH_REQUEST))

    purpose: Purpose
    channel: Channel
    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    person_ids: list[uuid.UUID] = Field(default_factory=list)


class ConsentChange(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(CHANGE_REQUEST))

    purpose: Purpose
    channel: Channel
    decision: Decision
    method: str = Field(min_length=1, max_length=100)
    source: str = Field(default="staff", min_length=1, max_length=200)
    notice_version: str | None = Field(default=None, min_length=1, max_length=50)


class OptoutRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(OPTOUT_REQUEST))

    person_id: uuid.UUID | None = None
    emails: list[str] = Field(default_factory=list, max_length=100)
    phones: list[str] = Field(default_factory=list, max_length=100)
    purposes: list[Purpose] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=lambda: list(Channel), min_length=1)
    method: str = Field(min_length=1, max_length=100)
    source: str = Field(default="staff", min_length=1, max_length=200)
    notice_version: str | None = Field(default=None, max_length=50)


# ---- checks ------------------------------------------------------------------------------

@router.post("/checks", summary="May we market to this email, phone or person for a purpose and channel?",
             response_model=CheckOut)
async def check_consent(body: CheckRequest, request: Request, principal: Principal = Depends(require(*CHECKERS))
                ) -> dict[str, Any]:
    given = [name for name in ("email", "phone", "person_id") if getattr(body, name) is not None]
    if len(given) != 1:
        raise InvalidInput("exactly one of email, phone, person_id is required",
                           fields={name: "exactly one of email, phone, person_id" for name in given or ["body"]})
    runtime = runtime_of(request)
    if (body.person_id is not None and principal.role not in SEES_PASSIVE
            and await storage.is_passive(runtime.pool, body.person_id)):
        # R6: staff other than the owner may not see a passivated person (403, audited, as at
        # contacts); marketing may never market to one, and learns nothing about their bans.
        if principal.role is not Role.marketing:
            await deny(request, principal, "consent.check", person_id=body.person_id)
        await write_audit(runtime.pool, principal, "consent.check", person_id=body.person_id, target="person_id",
                          details={"purpose": body.purpose.value, "channel": body.channel.value,
                                   "restricted": True})
        return {"purpose": body.purpose, "channel": body.channel, **RESTRICTED}
    outcome = await check_one(runtime.pool, hasher_for(consent_settings(runtime)), body.purpose, body.channel,
                              email=body.email, phone=body.phone, person_id=body.person_id)
    if outcome is None:
        raise InvalidInput(f"{given[0]} is not a valid {given[0]}", fields={given[0]: "not a valid contact point"})
    await write_audit(runtime.pool, principal, "consent.check", person_id=body.person_id, target=given[0],
                      details={"purpose": body.purpose.value, "channel": body.channel.value})
    return {"purpose": body.purpose, "channel": body.channel, "allowed": outcome.allowed,
            "reason": outcome.reason.value}


@router.post("/checks/batch", summary="Check a campaign list (up to 100,000 contact points or persons)",
             response_model=BatchOut, responses=errors(429))
async def check_many(body: BatchCheckRequest, request: Request,
                     principal: Principal = Depends(require(*CHECKERS))) -> JSONResponse:
    runtime = runtime_of(request)
    total = len(body.emails) + len(body.phones) + len(body.person_ids)
    limit = consent_settings(runtime).consent_batch_max
    if total > limit:
        raise InvalidInput(f"a batch check takes at most {limit} entries",
                           fields={"emails": f"emails, phones and person_ids together at most {limit}"})
    counts = {"emails": len(body.emails), "phones": len(body.phones), "person_ids": len(body.person_ids)}
    try:
        batch_limits_of(request).check(principal.user, "batch-checked entries", cost=total)
    except RateLimited:
        await audit_denial(request, principal, "consent.check_batch", outcome="rate_limited",
                           details={"purpose": body.purpose.value, "channel": body.channel.value, **counts})
        raise
    result = await check_batch(runtime.pool, hasher_for(consent_settings(runtime)), body.purpose, body.channel,
                               emails=body.emails, phones=body.phones, person_ids=body.person_ids)
    if body.person_ids and principal.role not in SEES_PASSIVE:
        passive = await storage.passive_among(runtime.pool, body.person_ids)
        if passive:  # R6: nothing about a passivated person for this role; marketing them is not allowed
            result["person_ids"] = [RESTRICTED if pid in passive else out
                                    for pid, out in zip(body.person_ids, result["person_ids"])]
            result["denied"] = sum(1 for key in ("emails", "phones", "person_ids")
                                   for out in result[key] if not out["allowed"])
    await write_audit(runtime.pool, principal, "consent.check_batch", target="batch",
                      details={"purpose": body.purpose.value, "channel": body.channel.value, "checked": total,
                               "denied": result["denied"], **counts})
    return JSONResponse({"purpose": body.purpose.value, "channel": body.channel.value, **result})


def batch_limits_of(request: Request) -> TokenBuckets:
    """Entries batch-checked per user: a token bucket per user (in-process, per replica)."""
    limits = getattr(request.app.state, "batch_check_limits", None)
    if limits is None:
        s = consent_settings(runtime_of(request))
        limits = request.app.state.batch_check_limits = TokenBuckets(s.consent_batch_burst_entries,
                                                                     s.consent_batch_entries_per_minute)
    return limits


# ---- a person's permissions and bans -----------------------------------------------------

async def _person_view(request: Request, principal: Principal, person_id: uuid.UUID, paging: PageRequest
                       ) -> dict[str, Any]:
    """The current choices whole (one a purpose and channel) and a page of their history by id (issue 20)."""
    pool = runtime_of(request).pool
    if await storage.is_erased(pool, person_id):
        raise NotFound("no consent data for this person")
    after = paging.after(int)
    async with pool.acquire() as conn:
        states = await storage.states_of(conn, person_id)
        history = await storage.history_of(conn, person_id, paging.limit + 1, after[0] if after else 0)
        await write_audit(conn, principal, "consent.read", person_id=person_id)
    history, next_cursor = page(history, paging.limit, lambda r: (r["id"],))
    return {"person_id": str(person_id), "consents": states, "next": next_cursor,
            "history": [{k: v for k, v in r.items() if k != "id"} for r in history]}


async def _own_or_staff(request: Request, principal: Principal, person_id: uuid.UUID, action: str) -> None:
    """A subject sees and changes only their own preferences (R11); a passivated person's are
    the register owner's only (R6)."""
    pool = runtime_of(request).pool
    if principal.role is Role.subject and principal.person_id != person_id:
        await deny(pool, principal, action, person_id=person_id)
    if principal.role is Role.register_user and await storage.is_passive(pool, person_id):
        await deny(pool, principal, action, person_id=person_id)


@router.get("/persons/{person_id}/consents", summary="A person's permissions, bans and their history",
            response_model=PersonConsents, responses=errors(404))
async def person_consents(person_id: uuid.UUID, request: Request, paging: PageRequest = HISTORY_PAGE,
                          principal: Principal = Depends(require_live(*STAFF, Role.subject))) -> dict[str, Any]:
    await _own_or_staff(request, principal, person_id, "consent.read")
    return await _person_view(request, principal, person_id, paging)


@router.post("/persons/{person_id}/consents", summary="Grant, ban or withdraw one purpose and channel",
             response_model=ChangeOut, responses=errors(404, 409))
async def change_person_consent(person_id: uuid.UUID, body: ConsentChange, request: Request,
                                principal: Principal = Depends(require_live(*STAFF, Role.subject))) -> dict[str, Any]:
    await _own_or_staff(request, principal, person_id, "consent.change")
    return await _change(request, principal, person_id, body)


@router.get("/me/consents", summary="Self-service: my own permissions and bans", response_model=PersonConsents,
            responses=errors(404))
async def my_consents(request: Request, paging: PageRequest = HISTORY_PAGE,
                      principal: Principal = Depends(require_live(Role.subject))) -> dict[str, Any]:
    assert principal.person_id is not None  # a subject token always names its person
    return await _person_view(request, principal, principal.person_id, paging)


@router.post("/me/consents", summary="Self-service: grant, ban or withdraw one purpose and channel",
             response_model=ChangeOut, responses=errors(404, 409))
async def change_my_consent(body: ConsentChange, request: Request,
                            principal: Principal = Depends(require_live(Role.subject))) -> dict[str, Any]:
    assert principal.person_id is not None
    return await _change(request, principal, principal.person_id, body)


async def _change(request: Request, principal: Principal, person_id: uuid.UUID, body: ConsentChange
                  ) -> dict[str, Any]:
    runtime = runtime_of(request)
    is_self = principal.role is Role.subject and principal.person_id == person_id
    # SPEC §10: a self-service change records where it came from, as the client's network only
    # (SPEC §9: minimised; docs/PRIVACY.md). The address is the one the HTTP server gives after
    # its trusted-proxy rule (HTTP_FORWARDED_ALLOW_IPS).
    network = client_network(request.client.host if request.client else None) if is_self else None
    evidence = Evidence(source="self_service" if is_self else body.source, method=body.method,
                        actor=principal.user, notice_version=body.notice_version, client_network=network)
    purpose, channel = body.purpose.value, body.channel.value
    async with runtime.pool.acquire() as conn, conn.transaction():
        if await storage.is_erased(conn, person_id):
            raise NotFound("no consent data for this person")

        uow = runtime.unit_of_work(conn)
        publish = uow.outbox.add
        if body.decision is Decision.ban:
            changes = await register_ban(uow, hasher_for(consent_settings(runtime)), person_id=person_id, emails=[],
                                         phones=[], purposes=[purpose], channels=[channel], evidence=evidence)
            if changes:
                await publish(OptoutRegistered(person_id=person_id, purposes=[body.purpose], channels=[body.channel],
                                               source=evidence.source, method=evidence.method, actor=evidence.actor,
                                               notice_version=evidence.notice_version))
        elif body.decision is Decision.grant:
            current = await storage.status_of(conn, person_id, purpose, channel)
            lifts_ban = current == Status.banned
            if lifts_ban and is_self and not is_fresh(principal):
                raise NotAuthenticated("lifting a ban needs the password entered within the last 5 minutes: "
                                       "log in again or POST /auth/reauthenticate at contacts",
                                       fields={"authorization": "fresh authentication required"})
            if lifts_ban and not may_lift_ban(role=principal.role, actor_is_person=is_self, method=body.method,
                                              notice_version=body.notice_version):
                raise Conflict("a ban can be lifted only by the person themselves, with method and notice_version",
                               fields={"decision": "a ban wins over a permission not given by the person"})
            if current != Status.granted:
                await storage.record_grant(conn, person_id, purpose, channel, evidence, lifts_ban=lifts_ban)
                await publish(ConsentGranted(person_id=person_id, purpose=body.purpose, channel=body.channel,
                                             source=evidence.source, method=evidence.method, actor=evidence.actor))
        else:
            if await storage.record_withdrawal(conn, person_id, purpose, channel, evidence):
                await publish(ConsentWithdrawn(person_id=person_id, purpose=body.purpose, channel=body.channel,
                                               source=evidence.source, method=evidence.method, actor=evidence.actor))
        status = await storage.status_of(conn, person_id, purpose, channel)
        await write_audit(conn, principal, "consent.change", person_id=person_id,
                          details={"purpose": purpose, "channel": channel, "decision": body.decision.value})
    return {"person_id": str(person_id), "purpose": purpose, "channel": channel, "status": status or "unknown"}


# ---- opt-outs by contact point (staff, web forms) -------------------------------------------

@router.post("/optouts", status_code=201, summary="Register a marketing ban by person and/or contact points",
             response_model=OptoutOut)
async def register_optout(body: OptoutRequest, request: Request,
                          principal: Principal = Depends(require(*STAFF, Role.service))) -> dict[str, Any]:
    if body.person_id is None and not body.emails and not body.phones:
        raise InvalidInput("person_id, emails or phones is required",
                           fields={"person_id": "required unless emails or phones are given"})
    runtime = runtime_of(request)
    hasher = hasher_for(consent_settings(runtime))
    normal_emails = [email_or_none(e) for e in body.emails]  # the one normal form (SPEC §9), as contacts publishes
    normal_phones = [phone_or_none(p) for p in body.phones]
    bad = {f"emails.{i}": "not a valid email" for i, e in enumerate(normal_emails) if e is None}
    bad |= {f"phones.{i}": "not a valid phone number" for i, p in enumerate(normal_phones) if p is None}
    if bad:
        raise InvalidInput("invalid contact points: " + ", ".join(bad), fields=bad)
    emails = [e for e in normal_emails if e is not None]
    phones = [p for p in normal_phones if p is not None]
    evidence = Evidence(source=body.source, method=body.method, actor=principal.user,
                        notice_version=body.notice_version)
    async with runtime.pool.acquire() as conn, conn.transaction():
        uow = runtime.unit_of_work(conn)
        changes = await register_ban(uow, hasher, person_id=body.person_id, emails=emails, phones=phones,
                                     purposes=[p.value for p in body.purposes],
                                     channels=[c.value for c in body.channels], evidence=evidence)
        await uow.outbox.add(OptoutRegistered(person_id=body.person_id, emails=emails, phones=phones,
                                       purposes=body.purposes, channels=body.channels, source=body.source,
                                       method=body.method, actor=principal.user, notice_version=body.notice_version))
        await write_audit(conn, principal, "consent.optout", person_id=body.person_id,
                          details={"purposes": [p.value for p in body.purposes], "new_bans": len(changes)})
    return {"person_id": str(body.person_id) if body.person_id else None, "new_bans": len(changes)}


# ---- the marketing register (R7, R9) -------------------------------------------------------

@router.get("/marketing-register", summary="Persons in the marketing register with their permissions and bans",
            response_model=MarketingRegister)
async def marketing_register(request: Request, paging: PageRequest = Depends(page_query(1000, 10_000)),
                             principal: Principal = Depends(require(Role.register_owner, Role.marketing))
                             ) -> dict[str, Any]:
    """A page by person id (issue 20): `next` is null on the last page."""
    pool = runtime_of(request).pool
    after = paging.after(uuid.UUID)
    persons, next_cursor = page(await storage.marketing_register_page(pool, after[0] if after else None,
                                                                      paging.limit + 1),
                                paging.limit, lambda r: (r["person_id"],))
    await write_audit(pool, principal, "consent.marketing_register_read", details={"count": len(persons)})
    return {"persons": persons, "next": next_cursor}
