"""The privacy portal of a data subject (R11-R14): my data with where each field came from and
when it will be passivated and disposed of (SPEC §10), editing it, my marketing choices per
purpose and channel with the notice version, my access report, rectification requests and their
outcome, my password. Through the services' `/me` routes (retention: the person's own
`/persons/{id}/retention`) with a token minted for the signed-in person."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.portal.backends import ServiceError
from services.portal.pages_console import CHANNELS, PURPOSES, consent_grid, field_rows, report_download
from services.portal.retention_view import retention_view
from services.portal.sessions import WebSession, save_data
from services.portal.web import PageError, field_errors, portal_of, read_form, redirect, render, subject

router = APIRouter(prefix="/me")
EDITABLE = ("first_name", "last_name", "title", "expertise", "emails", "phones")
LISTS = ("emails", "phones")
CHOICES = {"grant": "granted", "ban": "banned", "none": ""}


async def _call(request: Request, session: WebSession, service: str, method: str, path: str, **kw: Any) -> Any:
    return await portal_of(request).backends.call(session, service, method, path, **kw)


async def _optional(request: Request, session: WebSession, service: str, path: str) -> Any:
    """A part of a page that may be missing (no right, unknown, not answering) without failing it."""
    try:
        return await _call(request, session, service, "GET", path)
    except ServiceError as exc:
        if exc.status in (403, 404, 503):
            return None
        raise


async def _my_rectifications(request: Request, session: WebSession) -> list[dict[str, Any]] | None:
    answer = await _optional(request, session, "contacts", "/me/rectifications")
    return None if answer is None else answer["rectifications"]


@router.get("")
async def my_data(request: Request) -> Response:
    """My data and my retention dates, asked at once (the rectifications' outcome is on their page)."""
    session = subject(request)
    me, retention = await asyncio.gather(
        _call(request, session, "contacts", "GET", "/me"),
        _optional(request, session, "retention", f"/persons/{session.person_id}/retention"))
    return render(request, "me_data.html", me=me, fields=field_rows(me), retention=retention_view(retention),
                  done=request.query_params.get("done", ""))


def _form_values(me: dict[str, Any]) -> dict[str, str]:
    person = me["person"]
    return {name: "\n".join(person.get(name) or []) if name in LISTS else (person.get(name) or "")
            for name in EDITABLE}


def _changes(form_values: dict[str, str], current: dict[str, str]) -> dict[str, Any]:
    """Only what the person changed; lists one per line."""
    changes: dict[str, Any] = {}
    for name in EDITABLE:
        new = form_values.get(name, "").strip()
        if new == current.get(name, "").strip():
            continue
        if name in LISTS:
            changes[name] = [line.strip() for line in new.splitlines() if line.strip()]
        else:
            changes[name] = new or None
    return changes


@router.get("/edit")
async def edit_form(request: Request) -> Response:
    session = subject(request)
    me = await _call(request, session, "contacts", "GET", "/me")
    return render(request, "me_edit.html", values=_form_values(me), errors={})


@router.post("/edit")
async def edit(request: Request) -> Response:
    session = subject(request)
    form = await read_form(request)
    me = await _call(request, session, "contacts", "GET", "/me")
    values = {name: form.get(name) for name in EDITABLE}
    changes = _changes(values, _form_values(me))
    if not changes:
        return redirect("/me")
    try:
        await _call(request, session, "contacts", "PATCH", "/me", json=changes)
    except ServiceError as exc:
        if exc.status != 422:
            raise
        return render(request, "me_edit.html", status=422, values=values, errors=field_errors(exc))
    return redirect("/me?done=saved")


@router.get("/marketing")
async def marketing_form(request: Request) -> Response:
    session = subject(request)
    consents = await _call(request, session, "consent", "GET", "/me/consents")
    return render(request, "me_marketing.html", grid=consent_grid(consents["consents"]), purposes=PURPOSES,
                  channels=CHANNELS, notice_version=portal_of(request).settings.portal_notice_version,
                  done=request.query_params.get("done", ""), errors={})


@router.post("/marketing")
async def marketing(request: Request) -> Response:
    """R13: each changed cell is one grant, ban or withdrawal at consent, with the notice version."""
    session = subject(request)
    form = await read_form(request)
    current = consent_grid((await _call(request, session, "consent", "GET", "/me/consents"))["consents"])
    notice = portal_of(request).settings.portal_notice_version
    errors: dict[str, str] = {}
    for purpose in PURPOSES:
        for channel in CHANNELS:
            choice = form.get(f"{purpose}.{channel}", "")
            if choice not in CHOICES or CHOICES[choice] == current[purpose][channel]:
                continue
            decision = {"grant": "grant", "ban": "ban", "none": "withdraw"}[choice]
            try:
                await _call(request, session, "consent", "POST", "/me/consents", json={
                    "purpose": purpose, "channel": channel, "decision": decision, "method": "web_form",
                    "source": "self_service", "notice_version": notice})
            except ServiceError as exc:
                if exc.status not in (409, 422):
                    raise
                errors[f"{purpose}.{channel}"] = "marketing.change_refused"
    if errors:
        consents = await _call(request, session, "consent", "GET", "/me/consents")
        return render(request, "me_marketing.html", status=422, grid=consent_grid(consents["consents"]),
                      purposes=PURPOSES, channels=CHANNELS, notice_version=notice, done="", errors=errors)
    return redirect("/me/marketing?done=saved")


@router.get("/access")
async def access_page(request: Request) -> Response:
    session = subject(request)
    requests = []
    for request_id in session.data.get("access_requests", []):
        try:
            requests.append(await _call(request, session, "contacts", "GET", f"/access-requests/{request_id}"))
        except ServiceError as exc:
            if exc.status != 404:
                raise
    return render(request, "me_access.html", requests=requests)


@router.post("/access")
async def request_access(request: Request) -> Response:
    """R12: an authenticated self-service user asks for everything stored about them."""
    session = subject(request)
    await read_form(request)
    answer = await _call(request, session, "contacts", "POST", "/me/access-requests")
    session.data["access_requests"] = [*session.data.get("access_requests", []), str(answer["id"])][-20:]
    await save_data(portal_of(request).pool, session)
    return redirect("/me/access")


@router.get("/access/{request_id}/report")
async def my_report(request_id: uuid.UUID, request: Request) -> Response:
    return await report_download(request, subject(request), request_id)


@router.get("/rectification")
async def rectification_form(request: Request) -> Response:
    session = subject(request)
    me, rectifications = await asyncio.gather(_call(request, session, "contacts", "GET", "/me"),
                                              _my_rectifications(request, session))
    return render(request, "me_rectification.html", values=_form_values(me) | {"reason": ""}, errors={},
                  rectifications=rectifications, done=request.query_params.get("done", ""))


@router.post("/rectification")
async def rectification(request: Request) -> Response:
    """R14: the person asks for a correction; staff decide it."""
    session = subject(request)
    form = await read_form(request)
    me = await _call(request, session, "contacts", "GET", "/me")
    values = {name: form.get(name) for name in EDITABLE} | {"reason": form.get("reason").strip()}
    changes = _changes(values, _form_values(me))
    errors: dict[str, str] = {}
    if not values["reason"]:
        errors["reason"] = "form.required"
    if not changes:
        errors["form"] = "rectification.nothing"
    if not errors:
        try:
            await _call(request, session, "contacts", "POST", "/me/rectifications",
                        json={"changes": changes, "reason": values["reason"]})
        except ServiceError as exc:
            if exc.status != 422:
                raise
            errors = field_errors(exc)
        else:
            return redirect("/me/rectification?done=rectification#my-rectifications")
    return render(request, "me_rectification.html", status=422, values=values, errors=errors,
                  rectifications=await _my_rectifications(request, session), done="")


@router.get("/password")
async def password_form(request: Request) -> Response:
    subject(request)
    return render(request, "me_password.html", errors={})


@router.post("/password")
async def change_password(request: Request) -> Response:
    session = subject(request)
    form = await read_form(request)
    current, new, again = form.get("current_password"), form.get("new_password"), form.get("new_password_again")
    errors: dict[str, str] = {}
    if not current:
        errors["current_password"] = "form.required"
    if len(new) < 12:
        errors["new_password"] = "password.too_short"
    elif new != again:
        errors["new_password_again"] = "password.mismatch"
    if not errors:
        try:
            await _call(request, session, "contacts", "POST", "/me/password",
                        json={"current_password": current, "new_password": new})
            return redirect("/me?done=password")
        except ServiceError as exc:
            if exc.status == 423:
                raise PageError(423, "login.locked") from None
            if exc.status != 422:
                raise
            errors = field_errors(exc)
    return render(request, "me_password.html", status=422, errors=errors)
