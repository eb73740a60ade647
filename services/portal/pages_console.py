"""The staff console: person search (the person page is pages_person.py), the register owner's work queues, the
marketing team's CSV consent check, billing (read only). Each page shows exactly what the
services allow the signed-in role (they decide; a refusal becomes the 403 page), except that
a passivated person is, to a register user, simply not found (R6)."""
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.portal import clock, csvcheck
from services.portal.backends import ServiceError
from services.portal.sessions import WebSession
from services.portal.web import PageError, field_errors, portal_of, read_form, redirect, render, staff

router = APIRouter(prefix="/staff")
PURPOSES = ("direct_advertising", "distance_selling", "other_direct_marketing", "opinion_and_market_research")
CHANNELS = ("email", "phone", "sms", "post")
PERSON_FIELDS = ("first_name", "last_name", "title", "expertise", "emails", "phones", "other_contact",
                 "organisation_id", "username", "nickname")
HOME = {"register_owner": "/staff/persons", "register_user": "/staff/persons", "marketing": "/staff/marketing",
        "billing": "/staff/billing"}


async def _call(request: Request, session: WebSession, service: str, method: str, path: str, **kw: Any) -> Any:
    return await portal_of(request).backends.call(session, service, method, path, **kw)


async def _optional(request: Request, session: WebSession, service: str, path: str, **kw: Any) -> Any:
    """A part of a page that may be missing (404) without failing the page."""
    try:
        return await _call(request, session, service, "GET", path, **kw)
    except ServiceError as exc:
        if exc.status in (403, 404):
            return None
        raise


@router.get("")
async def home(request: Request) -> Response:
    return redirect(HOME.get(staff(request).role, "/staff/persons"))


# ---- persons ------------------------------------------------------------------------------

@router.get("/persons")
async def search(request: Request) -> Response:
    session = staff(request)
    q = {k: request.query_params.get(k, "").strip() for k in ("name", "email", "phone")}
    params = {k: v for k, v in q.items() if v}
    found, errors = None, {}
    if params:
        try:
            found = (await _call(request, session, "contacts", "GET", "/persons", params=params))["persons"]
        except ServiceError as exc:
            if exc.status != 422:
                raise
            errors = field_errors(exc)
    return render(request, "staff_search.html", values=q, found=found, errors=errors)


def consent_grid(consents: list[dict[str, Any]] | None) -> dict[str, dict[str, str]]:
    """purpose -> channel -> status ("granted", "banned" or "" for no choice recorded)."""
    grid = {p: {c: "" for c in CHANNELS} for p in PURPOSES}
    for row in consents or []:
        if row["purpose"] in grid and row["channel"] in grid[row["purpose"]]:
            grid[row["purpose"]][row["channel"]] = row["status"]
    return grid


def field_rows(everything: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stored field with its value and source (R3, R4)."""
    person, sources = everything["person"], everything.get("field_sources") or {}
    account = everything.get("account") or {}
    rows = []
    for name in PERSON_FIELDS:
        value = account.get(name) if name in ("username", "nickname") else person.get(name)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        rows.append({"field": name, "value": value, "source": (sources.get(name) or {}).get("source", "")})
    return rows


@router.get("/organisations/{org_id}")
async def organisation_page(org_id: uuid.UUID, request: Request) -> Response:
    """An employer organisation (R3) and the persons of it this role may see."""
    session = staff(request)
    org, members = await asyncio.gather(
        _call(request, session, "contacts", "GET", f"/organisations/{org_id}"),
        _call(request, session, "contacts", "GET", "/persons", params={"organisation_id": str(org_id)}))
    return render(request, "staff_organisation.html", org=org, members=members["persons"])


# ---- the register owner's work queues ------------------------------------------------------

def _with_clock(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out = []
    for r in rows:
        received = clock.parse_time(r["created_at"])
        assert received is not None  # every queued request has its creation time
        out.append({**r, "due": clock.due_date(received), "days_left": clock.days_left(received, now)})
    return out


@router.get("/queues")
async def queues(request: Request) -> Response:
    session = staff(request)
    awaiting, collecting, rects, summary, due, overdue, held = await asyncio.gather(
        _call(request, session, "contacts", "GET", "/access-requests", params={"status": "awaiting_decision"}),
        _call(request, session, "contacts", "GET", "/access-requests", params={"status": "collecting"}),
        _call(request, session, "contacts", "GET", "/rectifications"),
        _call(request, session, "retention", "GET", "/reports/summary", params={"days": 30}),
        _call(request, session, "retention", "GET", "/reports/due", params={"days": 30}),
        _call(request, session, "retention", "GET", "/reports/overdue"),
        _call(request, session, "retention", "GET", "/reports/held"))
    # Each queue shows its first page; `more` names those with further pages (issue 20).
    more = {name: bool(answer.get("next")) for name, answer in (
        ("awaiting", awaiting), ("collecting", collecting), ("rectifications", rects), ("due", due),
        ("overdue", overdue), ("held", held))}
    return render(request, "staff_queues.html", awaiting=_with_clock(awaiting["access_requests"]),
                  collecting=_with_clock(collecting["access_requests"]), rectifications=_with_clock(rects["pending"]),
                  summary=summary, due=due["items"], overdue=overdue["items"], held=held["items"], more=more)


@router.post("/holds/{hold_id}/release")
async def release_hold(hold_id: uuid.UUID, request: Request) -> Response:
    session = staff(request)
    await read_form(request)
    await _call(request, session, "retention", "DELETE", f"/holds/{hold_id}")
    return redirect("/staff/queues#held")


@router.get("/access-requests/{request_id}")
async def access_request_page(request_id: uuid.UUID, request: Request) -> Response:
    session = staff(request)
    answer = await _call(request, session, "contacts", "GET", f"/access-requests/{request_id}")
    return render(request, "staff_access_request.html", req=_with_clock([answer])[0], errors={}, values={})


@router.post("/access-requests/{request_id}/decision")
async def decide_access_request(request_id: uuid.UUID, request: Request) -> Response:
    """R12: a chargeable request is answered (fee charged or waived) or refused, with a reason."""
    session = staff(request)
    form = await read_form(request)
    values = {"decision": form.get("decision"), "reason": form.get("reason").strip()}
    errors = {} if values["reason"] else {"reason": "form.required"}
    if values["decision"] not in ("charge", "waive", "refuse"):
        errors["decision"] = "form.choose"
    if not errors:
        try:
            await _call(request, session, "contacts", "POST", f"/access-requests/{request_id}/decision", json=values)
            return redirect(f"/staff/access-requests/{request_id}?done=decision")
        except ServiceError as exc:
            if exc.status not in (409, 422):
                raise
            errors = field_errors(exc) or {"form": exc.code}
    answer = await _call(request, session, "contacts", "GET", f"/access-requests/{request_id}")
    return render(request, "staff_access_request.html", status=422, req=_with_clock([answer])[0], errors=errors,
                  values=values)


@router.get("/access-requests/{request_id}/report")
async def access_report(request_id: uuid.UUID, request: Request) -> Response:
    return await report_download(request, staff(request), request_id)


async def report_download(request: Request, session: WebSession, request_id: uuid.UUID) -> Response:
    """The assembled report from contacts, as HTML in the visitor's language or as JSON."""
    fmt = "json" if request.query_params.get("format") == "json" else "html"
    try:
        upstream = await portal_of(request).backends.call(
            session, "contacts", "GET", f"/access-requests/{request_id}/report",
            params={"format": fmt, "lang": request.state.lang}, raw=True)
    except ServiceError as exc:
        if exc.status == 409:
            raise PageError(409, "access.not_ready") from None
        raise
    headers = {"Content-Disposition": f'attachment; filename="access-report-{request_id}.json"'} if fmt == "json" else {}
    return Response(upstream.content, media_type=upstream.headers.get("content-type"), headers=headers)


@router.get("/rectifications/{rect_id}")
async def rectification_page(rect_id: uuid.UUID, request: Request) -> Response:
    session = staff(request)
    rect = await _call(request, session, "contacts", "GET", f"/rectifications/{rect_id}")
    return render(request, "staff_rectification.html", rect=rect, errors={}, values={})


@router.post("/rectifications/{rect_id}/decision")
async def decide_rectification(rect_id: uuid.UUID, request: Request) -> Response:
    session = staff(request)
    form = await read_form(request)
    values = {"approve": form.get("approve"), "reason": form.get("reason").strip()}
    errors = {} if values["reason"] else {"reason": "form.required"}
    if values["approve"] not in ("yes", "no"):
        errors["approve"] = "form.choose"
    if not errors:
        try:
            await _call(request, session, "contacts", "POST", f"/rectifications/{rect_id}/decision",
                        json={"approve": values["approve"] == "yes", "reason": values["reason"]})
            return redirect(f"/staff/rectifications/{rect_id}")
        except ServiceError as exc:
            if exc.status not in (409, 422):
                raise
            errors = field_errors(exc) or {"form": exc.code}
    rect = await _call(request, session, "contacts", "GET", f"/rectifications/{rect_id}")
    return render(request, "staff_rectification.html", status=422, rect=rect, errors=errors, values=values)


# ---- marketing: a campaign list checked against bans (R8, R13) -------------------------------

@router.get("/marketing")
async def marketing_form(request: Request) -> Response:
    staff(request)
    return render(request, "staff_marketing.html", purposes=PURPOSES, channels=CHANNELS, errors={},
                  values={"purpose": "direct_advertising", "channel": "email"}, results=None)


@router.post("/marketing")
async def marketing_check(request: Request) -> Response:
    session = staff(request)
    form = await read_form(request)
    values = {"purpose": form.get("purpose"), "channel": form.get("channel")}
    errors: dict[str, str] = {}
    if values["purpose"] not in PURPOSES:
        errors["purpose"] = "form.choose"
    if values["channel"] not in CHANNELS:
        errors["channel"] = "form.choose"
    entries: list[csvcheck.Entry] = []
    try:
        entries = csvcheck.parse_contact_points(form.files.get("file") or b"")
    except csvcheck.CsvProblem as exc:
        errors["file"] = exc.key
    if not errors:
        try:
            answer = await _call(request, session, "consent", "POST", "/checks/batch", json={
                **values, "emails": [e.value for e in entries if e.kind == "email"],
                "phones": [e.value for e in entries if e.kind == "phone"]})
        except ServiceError as exc:
            if exc.status != 422:
                raise
            errors = {"file": "marketing.too_many"}
        else:
            rows = csvcheck.answer_rows(entries, answer["emails"], answer["phones"])
            if form.get("format") == "csv":
                return Response(csvcheck.to_csv(rows), media_type="text/csv; charset=utf-8", headers={
                    "Content-Disposition": f'attachment; filename="consent-check-{values["purpose"]}-'
                                           f'{values["channel"]}.csv"'})
            return render(request, "staff_marketing.html", purposes=PURPOSES, channels=CHANNELS, errors={},
                          values=values, results=rows, denied=answer["denied"], checked=answer["checked"])
    return render(request, "staff_marketing.html", status=422, purposes=PURPOSES, channels=CHANNELS, errors=errors,
                  values=values, results=None)


# ---- billing (read only) -------------------------------------------------------------------

def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


@router.get("/billing")
async def billing(request: Request) -> Response:
    session = staff(request)
    values = {k: request.query_params.get(k, "").strip() for k in ("customer_id", "period")}
    errors: dict[str, str] = {}
    params: dict[str, str] = {}
    if values["customer_id"]:
        if _uuid_or_none(values["customer_id"]) is None:
            errors["customer_id"] = "form.uuid"
        else:
            params["customer_id"] = values["customer_id"]
    if values["period"]:
        params["period"] = values["period"]
    invoices, usage, later = [], None, None
    if not errors:
        try:
            cursor = request.query_params.get("cursor")
            page = await _call(request, session, "billing", "GET", "/billing/invoices",
                               params=params | ({"cursor": cursor} if cursor else {}))
            invoices = page["invoices"]  # billing pages its list (issue 20): the link to the next page carries `next`
            later = page.get("next") and urlencode(params | {"cursor": page["next"]})
            if "customer_id" in params and values["period"]:
                usage = await _call(request, session, "billing", "GET",
                                    f"/billing/customers/{params['customer_id']}/usage",
                                    params={"period": values["period"]})
        except ServiceError as exc:
            if exc.status != 422:
                raise
            errors = field_errors(exc)
    return render(request, "staff_billing.html", status=422 if errors else 200, values=values, errors=errors,
                  invoices=invoices, usage=usage, later=later)


@router.get("/billing/usage.csv")
async def usage_csv(request: Request) -> Response:
    session = staff(request)
    customer = _uuid_or_none(request.query_params.get("customer_id", ""))
    if customer is None:
        raise PageError(404, "error.not_found.text")
    upstream = await portal_of(request).backends.call(
        session, "billing", "GET", f"/billing/customers/{customer}/usage",
        params={"period": request.query_params.get("period", ""), "format": "csv"}, raw=True)
    return Response(upstream.content, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": upstream.headers.get("content-disposition", "attachment")})
