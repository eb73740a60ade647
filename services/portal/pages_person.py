"""A person's page in the staff console (issue 19): fields with their source, relationships,
consents, rectifications, and for the register owner retention (dates, rule, holds, blocked or
overdue), evidence, access requests and the audit trail; placing a hold and recording an access
request. The owner's page asks the services all at once; a register user's asks contacts first,
so nothing else is asked about a person contacts refuses them (R6)."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.portal import clock
from services.portal.backends import ServiceError
from services.portal.pages_console import CHANNELS, PURPOSES, _call, _optional, consent_grid, field_rows
from services.portal.retention_view import retention_view
from services.portal.sessions import WebSession
from services.portal.web import PageError, field_errors, read_form, redirect, render, staff

AUDIT_SHOWN = 50  # audit entries on a person's page, the newest
router = APIRouter(prefix="/staff")


async def _access_requests_of(request: Request, session: WebSession, person_id: str) -> list[dict[str, Any]]:
    """The person's requests in one call (it took one per status, filtered here)."""
    answer = await _optional(request, session, "contacts", "/access-requests",
                             params={"person_id": person_id, "status": "any"})
    return sorted((answer or {}).get("access_requests", []), key=lambda r: r["created_at"])


async def _person(request: Request, session: WebSession, pid: str) -> dict[str, Any]:
    try:
        return await _call(request, session, "contacts", "GET", f"/persons/{pid}")
    except ServiceError as exc:
        # R6: to a register user a passivated person does not exist; the refusal is audited by contacts.
        if exc.status == 404 or (exc.status == 403 and session.role == "register_user"):
            raise PageError(404, "error.not_found.person") from None
        raise


async def _gathered(*calls: Any) -> list[Any]:
    """Every call at once; the first failure (in the order given) is the page's."""
    answers = await asyncio.gather(*calls, return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


async def person_context(request: Request, session: WebSession, person_id: uuid.UUID) -> dict[str, Any]:
    pid = str(person_id)
    owner = session.role == "register_owner"
    consents_path = f"/persons/{pid}/consents"
    if owner:
        everything, consents, retention, evidence, audit, access = await _gathered(
            _person(request, session, pid), _optional(request, session, "consent", consents_path),
            _optional(request, session, "retention", f"/persons/{pid}/retention"),
            _optional(request, session, "retention", f"/evidence/{pid}"),
            _optional(request, session, "contacts", f"/audit/persons/{pid}", params={"limit": AUDIT_SHOWN}),
            _access_requests_of(request, session, pid))
    else:
        everything = await _person(request, session, pid)
        consents = await _optional(request, session, "consent", consents_path)
        retention, evidence, audit, access = None, None, None, []
    return {
        "person_id": pid, "everything": everything, "person": everything["person"], "fields": field_rows(everything),
        "grid": consent_grid(consents["consents"] if consents else None), "consents_known": consents is not None,
        "purposes": PURPOSES, "channels": CHANNELS, "retention": retention_view(retention),
        "evidence": (evidence or {}).get("items", []),
        # The newest page of the trail, shown oldest first; `audit_more` says older entries exist (issue 20).
        "audit": list(reversed((audit or {}).get("entries", []))), "audit_more": bool((audit or {}).get("next")),
        "access_requests": access, "owner": owner,
        "errors": {}, "values": {}, "done": request.query_params.get("done", ""),
    }


@router.get("/persons/{person_id}")
async def person_page(person_id: uuid.UUID, request: Request) -> Response:
    session = staff(request)
    return render(request, "staff_person.html", **await person_context(request, session, person_id))


def _parse_day(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


@router.post("/persons/{person_id}/holds")
async def place_hold(person_id: uuid.UUID, request: Request) -> Response:
    """A legal hold (register owner): retention defers the person's disposition until it expires."""
    session = staff(request)
    form = await read_form(request)
    values = {"reason": form.get("reason").strip(), "expires_on": form.get("expires_on")}
    errors: dict[str, str] = {}
    day = _parse_day(values["expires_on"])
    if not values["reason"]:
        errors["reason"] = "form.required"
    if day is None:
        errors["expires_on"] = "form.date"
    if not errors and day is not None:
        try:
            await _call(request, session, "retention", "POST", "/holds", json={
                "person_id": str(person_id), "reason": values["reason"],
                "expires_at": clock.end_of_day(day).isoformat()})
            return redirect(f"/staff/persons/{person_id}?done=hold#holds")
        except ServiceError as exc:
            if exc.status not in (409, 422):
                raise
            errors = {("expires_on" if k == "expires_at" else k): v for k, v in field_errors(exc).items()}
            errors = {k if k in ("reason", "expires_on") else "hold": v for k, v in errors.items()}
    context = await person_context(request, session, person_id)
    context.update(errors=errors, values=values)
    return render(request, "staff_person.html", status=422, **context)


@router.post("/persons/{person_id}/access-requests")
async def record_access_request(person_id: uuid.UUID, request: Request) -> Response:
    """R12: the register owner records a signed or in-person request and how identity was checked."""
    session = staff(request)
    form = await read_form(request)
    body = {"person_id": str(person_id), "verification": form.get("verification"),
            "verified_by": form.get("verified_by").strip() or session.username}
    if form.get("notes").strip():
        body["notes"] = form.get("notes").strip()
    try:
        answer = await _call(request, session, "contacts", "POST", "/access-requests", json=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        context = await person_context(request, session, person_id)
        context.update(errors={("access_" + k): v for k, v in field_errors(exc).items()},
                       values={"verification": body["verification"], "notes": form.get("notes")})
        return render(request, "staff_person.html", status=422, **context)
    return redirect(f"/staff/access-requests/{answer['id']}")
