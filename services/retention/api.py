"""HTTP routes of the retention service: legal holds and reports, register owner only (SPEC §5)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.retention import storage
from services.retention.runtime import RetentionRuntime
from shared.web.auth import Principal, Role, write_audit
from shared.errors import Conflict, InvalidInput, NotFound
from shared.web.http import require, runtime_of

router = APIRouter(tags=["retention"])
OWNER = Depends(require(Role.register_owner))
MAX_ITEMS = 1000


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500)
    expires_at: AwareDatetime


def _runtime(request: Request) -> RetentionRuntime:
    runtime = runtime_of(request)
    assert isinstance(runtime, RetentionRuntime)
    return runtime


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@router.post("/holds", status_code=201, summary="Hold a person's disposition until the expiry (legal hold)")
async def create_hold(body: HoldRequest, request: Request, principal: Principal = OWNER) -> dict[str, Any]:
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
    return {"hold_id": str(hold_id), "person_id": str(body.person_id), "expires_at": body.expires_at.isoformat()}


@router.delete("/holds/{hold_id}", summary="Release a legal hold; deferred dispositions fall due again")
async def release_hold(hold_id: uuid.UUID, request: Request, principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await storage.release_hold(conn, hold_id, runtime.clock.now())
        if row is None:
            raise NotFound("no hold in force with that hold_id")
        await write_audit(conn, principal, "retention.hold.release", person_id=row["person_id"], target=str(hold_id))
    return {"hold_id": str(hold_id), "released": True}


@router.get("/reports/due", summary="Passivations and dispositions due within the next N days")
async def report_due(request: Request, days: int = Query(30, ge=0, le=3660), limit: int = Query(100, ge=1, le=MAX_ITEMS),
                     principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.due_report(conn, runtime.clock.now() + timedelta(days=days), limit)
        await write_audit(conn, principal, "retention.report.due")
    return {"days": days, "count": count, "items": [
        {"person_id": str(r["person_id"]), "action": r["action"], "due_at": _iso(r["due_at"]), "basis": r["basis"],
         "policy_version": r["policy_version"]} for r in rows]}


@router.get("/reports/held", summary="Dispositions under a legal hold in force")
async def report_held(request: Request, limit: int = Query(100, ge=1, le=MAX_ITEMS),
                      principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.held_report(conn, runtime.clock.now(), limit)
        await write_audit(conn, principal, "retention.report.held")
    return {"count": count, "items": [
        {"hold_id": str(r["hold_id"]), "person_id": str(r["person_id"]), "reason": r["reason"],
         "expires_at": _iso(r["expires_at"]), "created_by": r["created_by"], "created_at": _iso(r["created_at"])}
        for r in rows]}


@router.get("/reports/overdue", summary="Commands not confirmed by every expected service in time")
async def report_overdue(request: Request, limit: int = Query(100, ge=1, le=MAX_ITEMS),
                         principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    cutoff = runtime.clock.now() - timedelta(seconds=runtime.settings.retention_confirmation_timeout_s)
    async with runtime.pool.acquire() as conn:
        count, rows = await storage.overdue_report(conn, cutoff, limit)
        await write_audit(conn, principal, "retention.report.overdue")
    return {"count": count, "items": [
        {"command_id": str(r["command_id"]), "person_id": str(r["person_id"]), "action": r["action"],
         "basis": r["basis"], "commanded_at": _iso(r["commanded_at"]), "attempts": r["attempts"],
         "missing": sorted(set(r["expected"]) - set(r["confirmations"]))} for r in rows]}


@router.get("/reports/summary", summary="Counts: due in the next N days, held, overdue")
async def report_summary(request: Request, days: int = Query(30, ge=0, le=3660),
                         principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    now = runtime.clock.now()
    cutoff = now - timedelta(seconds=runtime.settings.retention_confirmation_timeout_s)
    async with runtime.pool.acquire() as conn:
        due, _ = await storage.due_report(conn, now + timedelta(days=days), 1)
        held, _ = await storage.held_report(conn, now, 1)
        overdue, _ = await storage.overdue_report(conn, cutoff, 1)
        await write_audit(conn, principal, "retention.report.summary")
    return {"days": days, "due": due, "held": held, "overdue": overdue, "policy_version": runtime.policy.version}


@router.get("/evidence/{person_id}", summary="Passivation and disposition evidence of one person (ids only)")
async def person_evidence(person_id: uuid.UUID, request: Request, principal: Principal = OWNER) -> dict[str, Any]:
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn:
        rows = await storage.evidence_of(conn, person_id)
        await write_audit(conn, principal, "retention.evidence.read", person_id=person_id)
    if not rows:
        raise NotFound("no evidence for that person_id")
    return {"person_id": str(person_id), "items": [
        {"command_id": str(r["command_id"]), "action": r["action"], "basis": r["basis"],
         "deadline_at": _iso(r["deadline_at"]), "policy_version": r["policy_version"],
         "commanded_at": _iso(r["commanded_at"]), "attempts": r["attempts"], "expected": list(r["expected"]),
         "confirmations": r["confirmations"], "completed_at": _iso(r["completed_at"])} for r in rows]}
