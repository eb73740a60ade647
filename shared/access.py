"""Right of access (R12): every service answers `access-requested` with its slice.

A service registers one `slice` function: given its store (in the open transaction) and the request
(person id and/or contact points), it returns the items it holds about that person,
each with its source and purpose. A portability export (Art. 20, issue 14) is asked the same
way with `purpose="portability"` and the services it needs; the others do not answer. The answer goes out as `access-report-part` through
the outbox, in the same transaction that records the request in the inbox, so each
request is answered exactly once in effect. Items are personal data: they travel only on
the access topics (bounded retention) and are never logged.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable
from uuid import UUID

from shared.messaging.handling import EventContext
from shared.messaging.events import AccessReportPart, AccessRequested
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
AccessSlice = Callable[[Any, AccessRequested], Awaitable[list[dict[str, Any]]]]  # (store, request)


def access_item(category: str, field: str, value: Any, *, source: str | None, purpose: str | None,
                recorded_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """One fact held about a person, in the shape every slice uses."""
    return {"category": category, "field": field, "value": _jsonable(value), "source": source,
            "purpose": purpose, "recorded_at": recorded_at.isoformat() if recorded_at else None,
            **{k: _jsonable(v) for k, v in extra.items()}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def answer_access_requests(runtime: ServiceRuntime, slice_of: AccessSlice) -> None:
    """Subscribe `runtime` to `access-requested`, answering with `slice_of`."""

    async def on_access_requested(ctx: EventContext[AccessRequested]) -> None:
        if ctx.payload.services and runtime.name not in ctx.payload.services:
            return  # a portability export asks only the services holding what the person provided
        items = await slice_of(ctx.store, ctx.payload)
        await ctx.outbox.add(AccessReportPart(request_id=ctx.payload.request_id, service=runtime.name,
                                           person_id=ctx.payload.person_id, purpose=ctx.payload.purpose,
                                           items=items))
        log.info("access_slice_answered", request_id=str(ctx.payload.request_id), purpose=ctx.payload.purpose,
                 items=len(items))

    runtime.subscribe("access-requested", on_access_requested)
