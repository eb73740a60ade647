"""Wires the portal: settings, its own small PostgreSQL pool (schema `portal`: staff accounts
and sessions), the clients of the four services, the page routes; nothing else."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.portal import i18n, pages_auth, pages_console, pages_person, pages_privacy, web
from shared.passwords import Passwords
from services.portal.backends import Backends, ServiceError
from services.portal.oidc import OidcClient
from services.portal.sessions import CSRF_COOKIE, LANG_COOKIE, SESSION_COOKIE, load_session, set_cookie
from services.portal.settings import PortalSettings
from shared.db import READINESS_CHECK_TIMEOUT_S, answers, create_pool, migrate
from shared.logging import get_logger
from shared.metrics import Metrics

log = get_logger(__name__)
SETTINGS = PortalSettings
MIGRATIONS = Path(__file__).parent / "migrations"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                               " frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Portal:
    """What the pages use: settings, pool, the services' clients, templates, password hashing."""

    def __init__(self, settings: PortalSettings,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics("portal")
        self.templates = web.make_environment()
        self.passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
        self._transports = transports
        self._pool: asyncpg.Pool | None = None
        self.backends: Backends | None = None
        self.oidc: OidcClient | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the portal is not started")
        return self._pool

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(s.database_url, s.schema, min_size=1, max_size=s.db_pool_max)
        await migrate(self._pool, s.schema, MIGRATIONS)
        self.backends = Backends(s.service_urls(), s.rekisteri_token_secret, s.portal_staff_token_ttl_s,
                                 s.portal_service_timeout_s, self._transports)
        if s.portal_oidc_issuer and s.portal_oidc_client_id:
            self.oidc = OidcClient(s)
        log.info("service_started", port=s.portal_port)

    async def stop(self) -> None:
        if self.backends is not None:
            await self.backends.aclose()
        if self.oidc is not None:
            await self.oidc.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def build_app(settings: PortalSettings | None = None, *,
              transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    portal = Portal(settings, transports)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # It mints the services' tokens: the development secret only under `rekisteri up` (issue 16).
        settings.check_secrets()
        await portal.start()
        try:
            yield
        finally:
            await portal.stop()

    app = FastAPI(title="Rekisteri portal", version="1.0.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    _install_session_middleware(app, portal, settings)
    _install_error_pages(app)
    _install_operations_routes(app, portal)
    for module in (pages_auth, pages_console, pages_person, pages_privacy):
        app.include_router(module.router)
    return app


def _install_session_middleware(app: FastAPI, portal: Portal, settings: PortalSettings) -> None:
    """Every page: its language, its session (idle timeout), a fresh CSRF cookie, security headers, timing."""
    @app.middleware("http")
    async def _session_and_language(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        request.state.lang = i18n.negotiate(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
                                            request.headers.get("accept-language"))
        request.state.session, request.state.timed_out = None, False
        if not request.url.path.startswith(("/static", "/healthz", "/readyz", "/metrics")):
            request.state.session, request.state.timed_out = await load_session(
                portal.pool, request.cookies.get(SESSION_COOKIE), settings.portal_idle_timeout_s)
        response = await call_next(request)
        new_csrf = getattr(request.state, "new_csrf", None)
        if new_csrf:
            set_cookie(response, CSRF_COOKIE, new_csrf, secure=settings.portal_cookie_secure, samesite="strict")
        if request.state.timed_out and not getattr(request.state, "session_cookie_set", False):
            response.delete_cookie(SESSION_COOKIE, path="/")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        route = request.scope.get("route")
        portal.metrics.http_requests.labels(method=request.method, route=getattr(route, "path", "unmatched"),
                                            status=str(response.status_code)).observe(time.perf_counter() - started)
        return response


def _install_error_pages(app: FastAPI) -> None:
    """Errors as pages in the visitor's language; a revoked token means signing in again."""
    @app.exception_handler(web.SignInRequired)
    async def _sign_in(request: Request, exc: web.SignInRequired) -> Response:
        target = "/login" if exc.kind == "staff" else "/me/login"
        note = "?expired=1" if request.state.timed_out else ""
        return web.redirect(target + note)

    @app.exception_handler(web.PageError)
    async def _page_error(request: Request, exc: web.PageError) -> Response:
        return web.error_page(request, exc.status, exc.key)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        if exc.status == 401:  # the session's token is no longer accepted: sign in again
            session = web.session_of(request)
            return web.redirect("/me/login?expired=1" if session and session.kind == "subject" else "/login?expired=1")
        return web.service_error_page(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return web.error_page(request, 404, "error.not_found.text")
        if exc.status_code == 405:
            return web.error_page(request, 405, "error.failed.text")
        return web.error_page(request, exc.status_code, "error.failed.text")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("portal_unhandled_error", path=request.url.path, error=type(exc).__name__)
        return web.error_page(request, 500, "error.failed.text")


def _install_operations_routes(app: FastAPI, portal: Portal) -> None:
    """Health, readiness and metrics, as every service has them."""
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "portal"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready when its database answers; the services' health is reported, not required
        (a page whose service is down says so)."""
        services: dict[str, bool] = {}
        if portal.backends is None:
            database = await answers(portal.pool)
        else:
            database, services = await asyncio.gather(answers(portal.pool),
                                                      portal.backends.healthy(READINESS_CHECK_TIMEOUT_S))
        return JSONResponse({"status": "ready" if database else "not_ready",
                             "checks": {"database": database}, "services": services},
                            status_code=200 if database else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(portal.metrics.render(), media_type="text/plain; version=0.0.4")
