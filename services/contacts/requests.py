"""The register owner's queue of data-subject requests and their deadlines (SPEC §10, GDPR
Art. 12(3)): list by status and due date, extend with a reason (the person is told through
`notification-requested`), and the overdue report. Deadlines are recorded when a request is
received (`record`, called by the access and rectification routes in their transaction)."""
from __future__ import annotations

from pydantic import ConfigDict
from shared.web.openapi import with_example

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import StrictInt, StringConstraints

from services.contacts import identity_codes, request_storage
from services.contacts.deadlines import check_extension, local_date
from services.contacts.schemas import Body
from shared.errors import Conflict, NotFound
from shared.messaging.envelope import utcnow
from shared.messaging.events import NotificationRequested
from shared.messaging.handling import UnitOfWork
from shared.web.auth import Principal, Role, write_audit
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of
from shared.web.paging import PageRequest, page, page_query

router = APIRouter(tags=["request deadlines"])
owner = require(Role.register_owner)
Status = Literal["awaiting_identity", "open", "answered", "closed"]
MAX_PAGE = 500


def today() -> date:
    return local_date(utcnow())


async def record(conn: asyncpg.Connection, request_id: uuid.UUID, kind: str, person_id: uuid.UUID | None,
                 channel: str, *, identity_method: str | None, received_at: datetime | None = None,
                 immediate: bool = False) -> dict[str, Any]:
    """A received request gets its deadline; `identity_method` None pauses the clock until verified.
    `immediate`: due on the day of receipt (an objection to direct marketing, Art. 21(3))."""
    return await request_storage.insert_request(conn, request_id, kind, person_id, channel,
                                                received_at or utcnow(), identity_method, immediate=immediate)


async def send_code(uow: UnitOfWork, conn: asyncpg.Connection, request_id: uuid.UUID, person_id: uuid.UUID,
                    channel: str, who: Principal) -> datetime:
    """A new one-time code to the person's own contact points (the mailer delivers it); only its
    hash is kept. Returns when it expires."""
    now = utcnow()
    issued = identity_codes.issue(now)
    await request_storage.store_code(conn, request_id, issued.salt, issued.digest, issued.expires_at,
                                     identity_codes.TRIES, who.user, now)
    await uow.outbox.add(NotificationRequested(
        person_id=person_id, template="identity-code",
        parameters={"request_id": str(request_id), "code": issued.code, "channel": channel,
                    "expires_at": issued.expires_at.isoformat()}))
    await write_audit(conn, who, "request.identity_code", person_id=person_id, target=f"request:{request_id}",
                      details={"channel": channel})
    return issued.expires_at


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "overdue": row["status"] == "open" and row["answer_by"] < today()}


PAGE = Depends(page_query(100, MAX_PAGE))


@router.get("/requests",
            response_model=answers.DeadlineRequests)
async def list_requests(request: Request, _who: Principal = Depends(owner), status: Status | None = None,
                        due_before: date | None = None, paging: PageRequest = PAGE) -> dict:
    """The queue, the most urgent first, a page at a time by (last day, id) (issue 20);
    `due_before` keeps those whose last day is before it."""
    rows = await request_storage.queue(runtime_of(request).pool, status=status, due_before=due_before,
                                       limit=paging.limit + 1, after=paging.after(date, uuid.UUID))
    rows, after = page(rows, paging.limit, lambda r: (r["answer_by"], r["id"]))
    return {"requests": [public(r) for r in rows], "next": after}


@router.get("/requests/{request_id}",
            response_model=answers.DeadlineRequest, responses=errors(404))
async def read_request(request_id: uuid.UUID, request: Request, _who: Principal = Depends(owner)) -> dict:
    row = await request_storage.get_request(runtime_of(request).pool, request_id)
    if row is None:
        raise NotFound("no such request")
    return public(row)


class ExtendIn(Body):
    """Both fields are checked together by `check_extension`, so one 422 names every bad field."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"months": 2, "reason": "the request is complex: data from three systems"}))

    months: StrictInt | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


@router.post("/requests/{request_id}/extend",
             response_model=answers.Extended, responses=errors(404, 409))
async def extend_request(request_id: uuid.UUID, body: ExtendIn, request: Request, who: Principal = Depends(owner)) -> dict:
    """Extend to 1 or 2 further months in total (Art. 12(3)); the reason is required and is told
    to the person. Everything (extension, audit, notification) commits together or not at all."""
    months, reason = body.months, body.reason
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await request_storage.get_request(conn, request_id, for_update=True)
        if row is None:
            raise NotFound("no such request")
        check_extension(row["extension_months"], months, reason)
        if row["status"] in ("answered", "closed"):
            raise Conflict("the request is already answered", fields={"status": row["status"]})
        deadline = request_storage.deadline_of(row).extended(months, reason)  # type: ignore[arg-type]
        reason = reason.strip()  # type: ignore[union-attr]
        await request_storage.record_extension(conn, request_id, deadline, reason, who.user, utcnow())
        notified = row["person_id"] is not None
        if notified:  # a request naming nobody known is answered through the channel it came by
            await runtime.unit_of_work(conn).outbox.add(NotificationRequested(
                person_id=row["person_id"], template="request-extended",
                parameters={"request_id": str(request_id), "kind": row["kind"],
                            "extended_until": deadline.extended_until.isoformat(),  # type: ignore[union-attr]
                            "reason": reason[:1000]}))
        await write_audit(conn, who, "request.extend", person_id=row["person_id"], target=f"request:{request_id}",
                          details={"months": months, "extended_until": deadline.extended_until.isoformat()})  # type: ignore[union-attr]
        return {**public(await request_storage.get_request(conn, request_id)), "notified": notified}  # type: ignore[arg-type]  # read back in the same transaction


@router.get("/reports/overdue-requests",
            response_model=answers.OverdueRequests)
async def overdue_report(request: Request, paging: PageRequest = PAGE, _who: Principal = Depends(owner)) -> dict:
    """Requests past their last day and unanswered, the longest overdue first (ids and dates
    only), a page at a time by (last day, id); `count` is all of them (issue 20)."""
    day = today()
    pool = runtime_of(request).pool
    rows, after = page(await request_storage.overdue(pool, day, paging.limit + 1, paging.after(date, uuid.UUID)),
                       paging.limit, lambda r: (r["answer_by"], r["id"]))
    return {"as_of": day, "count": await request_storage.overdue_count(pool, day), "next": after,
            "requests": [{"id": r["id"], "kind": r["kind"], "received_on": r["received_on"],
                          "answer_by": r["answer_by"], "days_overdue": (day - r["answer_by"]).days} for r in rows]}
