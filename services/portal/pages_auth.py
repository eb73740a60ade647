"""Signing in and out: staff with a local account (password, optional TOTP), data subjects
with their self-service account at contacts (`POST /auth/login`); the language choice."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.portal import accounts, i18n
from services.portal.oidc import FLOW_COOKIE, FLOW_MAX_AGE_S, OidcError
from services.portal.backends import ServiceError
from services.portal.sessions import (LANG_COOKIE, SESSION_COOKIE, WebSession, close_session, open_session,
                                      rotate_csrf, set_cookie)
from services.portal.web import field_errors, error_page, portal_of, read_form, redirect, render, session_of
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter()


@router.get("/")
async def landing(request: Request) -> Response:
    session = session_of(request)
    if session is not None:
        return redirect("/staff" if session.is_staff else "/me")
    return render(request, "landing.html")


async def _signed_in(request: Request, session_value: str, target: str) -> Response:
    """A new session cookie (any earlier session of this browser ends) and a new CSRF token."""
    portal = portal_of(request)
    settings = portal.settings
    await close_session(portal.pool, request.cookies.get(SESSION_COOKIE))
    response = redirect(target)
    set_cookie(response, SESSION_COOKIE, session_value, secure=settings.portal_cookie_secure, samesite="lax")
    request.state.session_cookie_set = True
    rotate_csrf(request)
    return response


@router.get("/login")
async def staff_login_form(request: Request) -> Response:
    return render(request, "login_staff.html", errors={}, values={}, expired=bool(request.query_params.get("expired")),
                  oidc=bool(portal_of(request).settings.portal_oidc_issuer))


@router.post("/login")
async def staff_login(request: Request) -> Response:
    form = await read_form(request)
    portal = portal_of(request)
    username, password, code = form.get("username").strip(), form.get("password"), form.get("totp").strip()
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "form.required"
    if not password:
        errors["password"] = "form.required"
    if not errors:
        outcome = await accounts.sign_in(portal.pool, portal.passwords, username, password, code or None)
        if outcome.role is not None:
            value = await open_session(portal.pool, WebSession(kind="staff", username=username, role=outcome.role),
                                       portal.settings.portal_session_max_s)
            log.info("staff_signed_in", role=outcome.role)
            return await _signed_in(request, value, "/staff")
        errors["form"] = {"locked": "login.locked", "totp_required": "login.totp_required"}.get(
            outcome.reason or "", "login.wrong")
        if outcome.reason == "totp_required":
            errors = {"totp": "login.totp_required"}
    return render(request, "login_staff.html", status=422 if "form" not in errors else 401, errors=errors,
                  values={"username": username}, expired=False, oidc=bool(portal.settings.portal_oidc_issuer))


@router.get("/login/oidc")
async def oidc_start(request: Request) -> Response:
    """Single sign-on: to the identity provider, with state, nonce and PKCE in a signed cookie."""
    portal = portal_of(request)
    if portal.oidc is None:
        return error_page(request, 404, "error.not_found.text")
    redirect_uri = portal.settings.portal_oidc_redirect_url or str(request.url_for("oidc_callback"))
    try:
        url, flow = await portal.oidc.start(redirect_uri)
    except OidcError as exc:
        return error_page(request, 503, exc.key)
    response = redirect(url)
    set_cookie(response, FLOW_COOKIE, flow, secure=portal.settings.portal_cookie_secure, max_age=FLOW_MAX_AGE_S,
               samesite="lax")  # Lax: the provider's redirect back is a top-level GET from its site
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request) -> Response:
    portal = portal_of(request)
    if portal.oidc is None:
        return error_page(request, 404, "error.not_found.text")
    try:
        username, role = await portal.oidc.finish(request.cookies.get(FLOW_COOKIE), request.query_params.get("state"),
                                                  request.query_params.get("code"))
    except OidcError as exc:
        log.warning("oidc_sign_in_refused", reason=exc.key)
        response: Response = error_page(request, 403 if exc.key == "oidc.no_role" else 400, exc.key)
        response.delete_cookie(FLOW_COOKIE, path="/")
        return response
    value = await open_session(portal.pool, WebSession(kind="staff", username=username, role=role),
                               portal.settings.portal_session_max_s)
    log.info("staff_signed_in", role=role, method="oidc")
    response = await _signed_in(request, value, "/staff")
    response.delete_cookie(FLOW_COOKIE, path="/")
    return response


@router.get("/me/login")
async def subject_login_form(request: Request) -> Response:
    return render(request, "login_subject.html", errors={}, values={},
                  expired=bool(request.query_params.get("expired")),
                  activated=bool(request.query_params.get("activated")))


@router.get("/me/activate")
async def subject_activate_form(request: Request) -> Response:
    return render(request, "activate_subject.html", errors={}, values={})


@router.post("/me/activate")
async def subject_activate(request: Request) -> Response:
    """R11: the person sets their own password with the single-use code staff had sent to them
    (contacts `POST /auth/activate`); the portal keeps nothing of it."""
    form = await read_form(request)
    portal = portal_of(request)
    username, code, new_password = form.get("username").strip(), form.get("code").strip(), form.get("new_password")
    errors: dict[str, str] = {f: "form.required" for f, v in
                              (("username", username), ("code", code), ("new_password", new_password)) if not v}
    if not errors:
        try:
            await portal.backends.call(None, "contacts", "POST", "/auth/activate",
                                       json={"username": username, "code": code, "new_password": new_password})
        except ServiceError as exc:
            if exc.status >= 500:
                raise
            if exc.status == 422 and exc.fields:
                errors = field_errors(exc)
            else:
                errors["form"] = "activate.wrong"
        else:
            log.info("subject_account_activated")
            return redirect("/me/login?activated=1")
    return render(request, "activate_subject.html", status=422 if "form" not in errors else 401, errors=errors,
                  values={"username": username})


@router.post("/me/login")
async def subject_login(request: Request) -> Response:
    form = await read_form(request)
    portal = portal_of(request)
    username, password = form.get("username").strip(), form.get("password")
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "form.required"
    if not password:
        errors["password"] = "form.required"
    if not errors:
        try:
            answer = await portal.backends.call(None, "contacts", "POST", "/auth/login",
                                                json={"username": username, "password": password})
        except ServiceError as exc:
            if exc.status >= 500:
                raise
            errors["form"] = "login.locked" if exc.status == 423 else "login.wrong"
        else:
            # contacts verified the password; the portal keeps only whose session it is
            session = WebSession(kind="subject", username=f"person:{answer['person_id']}", role="subject",
                                 person_id=answer["person_id"])
            value = await open_session(portal.pool, session, portal.settings.portal_session_max_s)
            return await _signed_in(request, value, "/me")
    return render(request, "login_subject.html", status=401 if "form" in errors else 422, errors=errors,
                  values={"username": username}, expired=False, activated=False)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await read_form(request)
    session = session_of(request)
    await close_session(portal_of(request).pool, request.cookies.get(SESSION_COOKIE))
    response = redirect("/me/login" if session and session.kind == "subject" else "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    rotate_csrf(request)
    return response


@router.get("/lang/{code}")
async def choose_language(code: str, request: Request) -> Response:
    lang = code if code in i18n.LANGUAGES else i18n.DEFAULT
    target = request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only this site's pages: no open redirect
    response = redirect(target)
    set_cookie(response, LANG_COOKIE, lang, secure=portal_of(request).settings.portal_cookie_secure,
               max_age=365 * 86400)
    return response
