"""What every page of the portal shares: the Jinja environment, rendering with the visitor's
language and CSRF token, the signed-in check per role, form reading with the CSRF check,
and the error pages (403, 404, unavailable, 500: never a stack trace)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.portal import i18n
from services.portal.backends import ServiceError
from services.portal.sessions import WebSession, csrf_token, csrf_valid


class Portal(Protocol):
    """What pages use of the running portal (`services.portal.app.Portal`), named here so that
    this module, which the app imports, does not import the app back."""

    settings: Any
    metrics: Any
    templates: Any
    passwords: Any
    backends: Any
    oidc: Any

    @property
    def pool(self) -> Any: ...


TEMPLATES = Path(__file__).parent / "templates"
# Which console sections each staff role's navigation shows (the services decide access).
NAVIGATION = {
    "register_owner": ("search", "queues", "marketing", "billing"),
    "register_user": ("search",),
    "marketing": ("marketing",),
    "billing": ("billing",),
}


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["date"] = i18n.format_date
    env.filters["datetime"] = i18n.format_datetime
    return env


def portal_of(request: Request) -> Portal:
    return request.app.state.portal


def session_of(request: Request) -> WebSession | None:
    return getattr(request.state, "session", None)


class PageError(Exception):
    """Raised by a page to answer with an error page (status, message key)."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


class SignInRequired(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = request.state.lang
    session = session_of(request)
    html = portal_of(request).templates.get_template(template).render(
        t=i18n.translator(lang), lang=lang, other_lang="en" if lang == "fi" else "fi", csrf=csrf_token(request),
        session=session, nav=NAVIGATION.get(session.role, ()) if session and session.is_staff else (),
        path=request.url.path, query=str(request.url.query), **context)
    return HTMLResponse(html, status_code=status)


def staff(request: Request) -> WebSession:
    session = session_of(request)
    if session is None or not session.is_staff:
        raise SignInRequired("staff")
    return session


def subject(request: Request) -> WebSession:
    session = session_of(request)
    if session is None or session.kind != "subject":
        raise SignInRequired("subject")
    return session


@dataclass
class Form:
    values: dict[str, str]
    lists: dict[str, list[str]]
    files: dict[str, bytes]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


async def read_form(request: Request) -> Form:
    """The posted form, after the CSRF check (403 page without a matching token)."""
    raw = await request.form()
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    for key, value in raw.multi_items():
        if hasattr(value, "read"):
            files[key] = await value.read()
        else:
            values.setdefault(key, str(value))
            lists.setdefault(key, []).append(str(value))
    if not csrf_valid(request, values.get("csrf")):
        raise PageError(403, "error.csrf")
    return Form(values, lists, files)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def field_errors(error: ServiceError) -> dict[str, str]:
    """A service's `fields` keyed by the form field they belong to: `changes.emails.0` -> `emails`."""
    out: dict[str, str] = {}
    for key, rule in error.fields.items():
        parts = [p for p in key.split(".") if p not in ("changes", "body") and not p.isdigit()]
        out.setdefault(parts[0] if parts else "form", rule)
    return out


def error_page(request: Request, status: int, key: str) -> HTMLResponse:
    titles = {403: "error.forbidden.title", 404: "error.not_found.title", 503: "error.unavailable.title"}
    return render(request, "error.html", status=status, title_key=titles.get(status, "error.failed.title"),
                  message_key=key)


def service_error_page(request: Request, exc: ServiceError) -> HTMLResponse:
    if exc.status == 403:
        return error_page(request, 403, "error.forbidden.role")
    if exc.status == 404:
        return error_page(request, 404, "error.not_found.text")
    if exc.status >= 500:
        return error_page(request, 503, "error.unavailable.text")
    return error_page(request, 400, "error.failed.text")
