"""HTTP routes of the retention service: legal holds and reports, register owner only (SPEC §5).
Reports are cursor pages (issue 20); every answer has its model (services/retention/schemas.py)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from services.retention import storage
from services.retention.runtime import RetentionRuntime
from services.retention.schemas import (BlockedReport, DueReport, Evidence, HeldReport, HoldOut, HoldReleased, HoldRequest,
                                        OverdueReport, Summary)
from services.retention.timing import PersonRetention, local_date, person_retention
from shared.web.auth import Principal, Role, deny, write_audit
from shared.errors import Conflict, InvalidInput, NotFound
from shared.lifecycle import State
from shared.web.http import require, runtime_of
from shared.web.openapi import errors
from shared.web.paging import PageRequest, page, page_query

router = APIRouter(tags=["retention"])
OWNER = Depends(require(Role.register_owner))
STAFF_OR_SUBJECT = Depends(require(Role.register_owner, Role.register_user, Role.subject))
MAX_ITEMS = 1000
PAGE = Depends(page_query(100, MAX_ITEMS))
# R6, R10: what a register user may read; passivated and later states are the register owner's.
USER_READABLE = frozenset({State.prospect, State.active, State.ended})


def _runtime(request: Request) -> RetentionRuntime:
    runtime = runtime_of(request)
    assert isinstance(runtime, RetentionRuntime)
    return runtime


@router.post("/holds", status_code=201, summary="Hold a person's disposition until the expiry (legal hold)",
             response_model=HoldOut, responses=errors(409))
async def create_hold(body: HoldRequest, request: Request, principal: Principal = OWNER) -> HoldOut:
    runtime = _runtime(request)
    now = runtime.clock.now()
    if body.expires_at <= now:
        raise InvalidInput("invalid input: expires_at must be in the future", fields={"expires_at": "must be in the future"})
    hold_id = uuid.uuid4()
    async with runtime.pool.acquire() as conn, conn.transaction():
        # The person lock orders this against a scheduler pass: the pass either sees the hold,
        # or has already commanded the disposition and the hold comes too late (409).
        state = await storage.lock_person(conn, body.person_id)
        if state is None or state == "disposing":
            raise Conflict("the person's final disposition has already been commanded",
                           fields={"person_id": "disposition already commanded"})
        await storage.insert_hold(conn, hold_id, body.person_id, body.reason, body.expires_at, principal.user, now)
        await write_audit(conn, principal, "retention.hold.create", person_id=body.person_id, target=str(hold_id))
    return HoldOut(hold_id=hold_id, person_id=body.person_id, expires_at=body.expires_at)


@router.delete("/holds/{hold_id}", summary="Release a legal hold; deferred dispositions fall due again",
               response_model=HoldReleased, responses=errors(404))
async def release_hold(hold_id: uuid.UUID, request: Request, principal: Principal = OWNER) -> HoldReleased:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await storage.release_hold(conn, hold_id, runtime.clock.now())
        if row is None:
            raise NotFound("no hold in force with that hold_id")
        await write_audit(conn, principal, "retention.hold.release", person_id=row["person_id"], target=str(hold_id))
    return HoldReleased(hold_id=hold_id, released=True)


@router.get("/reports/due", summary="Passivations and dispositions due within the next N days, a page at a time",
            response_model=DueReport)
async def report_due(request: Request, days: int = Query(30, ge=0, le=3660), paging: PageRequest = PAGE,
                     principal: Principal = OWNER) -> DueReport:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.due_report(conn, runtime.clock.now() + timedelta(days=days), paging.limit,
                                               paging.after(datetime, int))
        await write_audit(conn, principal, "retention.report.due")
    rows, after = page(rows, paging.limit, lambda r: (r["due_at"], r["id"]))
    return DueReport(days=days, count=count, next=after, items=[
        {"person_id": r["person_id"], "action": r["action"], "due_at": r["due_at"], "basis": r["basis"],
         "policy_version": r["policy_version"]} for r in rows])


@router.get("/reports/held", summary="Dispositions under a legal hold in force, a page at a time",
            response_model=HeldReport)
async def report_held(request: Request, paging: PageRequest = PAGE, principal: Principal = OWNER) -> HeldReport:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.held_report(conn, runtime.clock.now(), paging.limit,
                                                paging.after(datetime, uuid.UUID))
        await write_audit(conn, principal, "retention.report.held")
    rows, after = page(rows, paging.limit, lambda r: (r["expires_at"], r["hold_id"]))
    return HeldReport(count=count, next=after, items=[dict(r) for r in rows])


@router.get("/reports/overdue", summary="Commands not confirmed by every expected service in time, a page at a time",
            response_model=OverdueReport)
async def report_overdue(request: Request, paging: PageRequest = PAGE, principal: Principal = OWNER) -> OverdueReport:
    runtime = _runtime(request)
    now = runtime.clock.now()
    cutoff = now - timedelta(seconds=runtime.settings.retention_confirmation_timeout_s)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.overdue_report(conn, cutoff, paging.limit, paging.after(datetime, uuid.UUID))
        await write_audit(conn, principal, "retention.report.overdue")
        # Issue 14: dispositions past their deadline that a hold or an unconfirmed command keeps;
        # their first page, the rest through /reports/blocked with `blocked_next`.
        blocked_count, blocked = await storage.blocked_dispositions(conn, now, cutoff, paging.limit)
    rows, after = page(rows, paging.limit, lambda r: (r["commanded_at"], r["command_id"]))
    blocked, blocked_after = page(blocked, paging.limit, _blocked_key)
    return OverdueReport(count=count, next=after, items=[
        {"command_id": r["command_id"], "person_id": r["person_id"], "action": r["action"],
         "basis": r["basis"], "commanded_at": r["commanded_at"], "attempts": r["attempts"],
         "missing": sorted(set(r["expected"]) - set(r["confirmations"]))} for r in rows],
        blocked_count=blocked_count, blocked=[_blocked_item(r) for r in blocked], blocked_next=blocked_after)


def _blocked_key(row: Any) -> tuple[Any, ...]:
    return row["deadline_at"], row["person_id"], row["row_key"]


def _blocked_item(row: Any) -> dict[str, Any]:
    return {"person_id": row["person_id"], "blocked_by": row["blocked_by"], "deadline_at": row["deadline_at"],
            "overdue_since": local_date(row["deadline_at"]), "hold_id": row["hold_id"],
            "command_id": row["command_id"]}


@router.get("/reports/blocked", summary="Dispositions blocked past their deadline by a hold or an unconfirmed command,"
            " a page at a time", response_model=BlockedReport)
async def report_blocked(request: Request, paging: PageRequest = PAGE, principal: Principal = OWNER) -> BlockedReport:
    runtime = _runtime(request)
    now = runtime.clock.now()
    cutoff = now - timedelta(seconds=runtime.settings.retention_confirmation_timeout_s)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.blocked_dispositions(conn, now, cutoff, paging.limit,
                                                         paging.after(datetime, uuid.UUID, str))
        await write_audit(conn, principal, "retention.report.blocked")
    rows, after = page(rows, paging.limit, _blocked_key)
    return BlockedReport(count=count, next=after, items=[_blocked_item(r) for r in rows])


@router.get("/reports/summary", summary="Counts: due in the next N days, held, overdue", response_model=Summary)
async def report_summary(request: Request, days: int = Query(30, ge=0, le=3660),
                         principal: Principal = OWNER) -> Summary:
    runtime = _runtime(request)
    now = runtime.clock.now()
    cutoff = now - timedelta(seconds=runtime.settings.retention_confirmation_timeout_s)
    async with runtime.pool.acquire() as conn:
        due, _ = await storage.due_report(conn, now + timedelta(days=days), 1)
        held, _ = await storage.held_report(conn, now, 1)
        overdue, _ = await storage.overdue_report(conn, cutoff, 1)
        await write_audit(conn, principal, "retention.report.summary")
    return Summary(days=days, due=due, held=held, overdue=overdue, policy_version=runtime.policy.version)


@router.get("/evidence/{person_id}", summary="Passivation and disposition evidence of one person (ids only)",
            response_model=Evidence, responses=errors(404))
async def person_evidence(person_id: uuid.UUID, request: Request, principal: Principal = OWNER) -> Evidence:
    """Not paged: one person's evidence has a row per lifecycle command (a passivation and a
    disposition, again only after a reactivation), given whole (issue 20)."""
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        rows = await storage.evidence_of(conn, person_id)
        destroyed_at = await storage.data_key_destroyed_at(conn, person_id)
        await write_audit(conn, principal, "retention.evidence.read", person_id=person_id)
    if not rows:
        raise NotFound("no evidence for that person_id")
    # Issue 15: the erasure's last step, crypto-shredding; null while the person's key lives.
    return Evidence(person_id=person_id, data_key_destroyed_at=destroyed_at, items=[
        {"command_id": r["command_id"], "action": r["action"], "basis": r["basis"],
         "deadline_at": r["deadline_at"], "policy_version": r["policy_version"],
         "commanded_at": r["commanded_at"], "attempts": r["attempts"], "expected": list(r["expected"]),
         "confirmations": r["confirmations"], "completed_at": r["completed_at"]} for r in rows])


@router.get("/persons/{person_id}/retention", response_model=PersonRetention, responses=errors(403, 404),
            summary="When this person is passivated and disposed of, by which rule, and what holds or blocks it")
async def person_timing(person_id: uuid.UUID, request: Request,
                        principal: Principal = STAFF_OR_SUBJECT) -> PersonRetention:
    """Issue 14 (SORMAS #7240): the dates a person's data is kept until, visible to staff and to
    the person themselves (the privacy portal's "my data", issue 19). Past the active lifecycle
    (passive, disposing, disposed of) only the register owner among staff reads it (R6, R10); a
    register user's attempt, or a subject's for someone else, is denied and audited. Every read
    is audited. Not paged: one person's dates and the legal holds in force on them are given
    whole (issue 20)."""
    runtime = _runtime(request)
    if principal.role is Role.subject and principal.person_id != person_id:
        await deny(request, principal, "retention.person.read", person_id=person_id)
    async with runtime.pool.acquire() as conn:
        facts = await storage.timing_facts(conn, person_id)
        if facts is None:
            raise NotFound("retention holds nothing of that person_id", fields={"person_id": "unknown to retention"})
        if principal.role is Role.register_user and facts.state not in USER_READABLE:
            await deny(request, principal, "retention.person.read", person_id=person_id)
        await write_audit(conn, principal, "retention.person.read", person_id=person_id)
    return person_retention(person_id, facts, runtime.clock.now(), runtime.settings.retention_confirmation_timeout_s)
