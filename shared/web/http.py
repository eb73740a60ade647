"""The HTTP face every service shares: health, readiness, metrics, API documents, and
the one mapping from errors to SPEC §7 bodies. Validation errors name fields and
rules, never the values sent (they may be personal)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import create_pool
from shared.messaging.asyncapi import build_asyncapi
from shared.web.auth import Principal, Role, bearer_of, role_guard, verify_token, write_audit
from shared.web.openapi import errors, install_openapi, operation_id, with_example
from shared.messaging.parsing import Incoming
from shared.messaging.retry import INFRASTRUCTURE_ERRORS
from shared.errors import NotAuthenticated, NotFound, RegisterError
from shared.messaging.topics import CATALOGUE, EXTERNAL
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime
    from shared.settings import ServiceSettings

log = get_logger(__name__)
HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
              422: "validation_error", 429: "too_many_requests"}


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message, "fields": fields or {}}


def _field_errors(exc: RequestValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        fields[".".join(loc) or "body"] = str(err.get("msg", "invalid"))
    return fields


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RegisterError)
    async def _register_error(_request: Request, exc: RegisterError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse(error_body(exc.code, exc.message, exc.fields), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        message = "invalid input: " + "; ".join(f"{k}: {v}" for k, v in list(fields.items())[:5])
        return JSONResponse(error_body("validation_error", message, fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    async def _dependency_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """PostgreSQL (or another dependency) away, e.g. restarting: 503 and retry, not a 500
        with a traceback in the log (found by the chaos soak, issue 20; SPEC §7)."""
        log.warning("http_dependency_unavailable", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(error_body("unavailable", "a dependency of the service is not available; retry"),
                            status_code=503, headers={"Retry-After": "1"})

    for infrastructure_error in INFRASTRUCTURE_ERRORS:  # by class: handled without the 500 path's re-raise
        app.add_exception_handler(infrastructure_error, _dependency_unavailable)  # type: ignore[arg-type]  # all Exceptions

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("http_unhandled_error", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(error_body("internal_error", "the service failed to handle the request"), status_code=500)


def create_http_app(runtime: ServiceRuntime, routers: list[APIRouter], *, description: str) -> FastAPI:
    """A service's FastAPI app; its lifespan starts and stops the whole runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.settings.check_secrets()  # a served process refuses the development secret (issue 16)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await close_audit_pool(app)

    # Swagger UI and ReDoc from the assets fastapi-offline ships: /docs works without a CDN.
    app = FastAPIOffline(title=f"Rekisteri {runtime.name}", version="1.0.0", description=description,
                         lifespan=lifespan, generate_unique_id_function=operation_id(runtime.name))
    app.state.runtime = runtime
    app.state.audit_pool = None
    app.state.audit_pool_lock = asyncio.Lock()

    async def audit_denial(principal: Principal | None, action: str, *, person_id: uuid.UUID | None = None,
                           outcome: str = "denied", details: dict[str, Any] | None = None) -> None:
        await write_audit(await audit_pool(app), principal, action, person_id=person_id, outcome=outcome,
                          details=details)

    app.state.audit_denial = audit_denial
    install_error_handlers(app)
    # Inside the metrics middleware (so its answers are measured, and its 413 is raised
    # straight into the route's body read): bodies are bounded and tokens checked before any
    # route, or FastAPI's body parsing, runs.
    app.add_middleware(RequestGate, api=app)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        runtime.metrics.http_requests.labels(
            method=request.method, route=getattr(route, "path", "unmatched"), status=str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response

    _add_operations_routes(app, runtime)
    app.include_router(event_accept_router(runtime))
    for router in routers:
        app.include_router(router)
    install_openapi(app, lambda route: _has_role_guard(route.dependant))
    return app


METRICS_MEDIA = "text/plain; version=0.0.4"


def _add_operations_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    """What every service answers for operators: liveness, readiness, metrics, its AsyncAPI."""
    @app.get("/healthz", tags=["operations"], summary="The process is alive", response_model=Health)
    async def get_health() -> Health:
        return Health(status="ok", service=runtime.name)

    @app.get("/readyz", tags=["operations"], summary="Its database and the broker answer", response_model=Readiness,
             responses={503: {"model": Readiness, "description": "Not ready: a check failed"}})
    async def get_readiness() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {METRICS_MEDIA: {"schema": {"type": "string"},
                                                          "example": "# TYPE http_requests histogram\n"}},
                              "description": "The Prometheus text exposition"}})
    async def get_metrics() -> Response:
        await runtime.refresh_gauges()
        return Response(runtime.metrics.render(), media_type=METRICS_MEDIA)

    @app.get("/asyncapi.json", tags=["operations"], summary="Topics this service publishes and consumes",
             response_model=AsyncApiDocument)
    async def get_asyncapi() -> dict[str, Any]:
        return build_asyncapi(runtime.name)


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example({"status": "ok", "service": "billing"}))

    status: str
    service: str


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"status": "ready", "checks": {"database": True, "broker": True}}))

    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


class AsyncApiDocument(BaseModel):
    """The service's AsyncAPI 3 document (see docs/asyncapi.json)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=with_example(
        {"asyncapi": "3.0.0", "info": {"title": "Rekisteri billing", "version": "1.0.0"}, "channels": {}}))

    asyncapi: str


AUDIT_POOL_SIZE = 2


async def audit_pool(app: FastAPI) -> asyncpg.Pool:
    """The small pool of the service's own that denial and 401 audits use: a route holding a
    connection of the main pool never waits for a second one of it (issue 16)."""
    if app.state.audit_pool is None:
        async with app.state.audit_pool_lock:
            if app.state.audit_pool is None:
                s = app.state.runtime.settings
                app.state.audit_pool = await create_pool(s.database_url, s.schema, min_size=0, max_size=AUDIT_POOL_SIZE,
                                                         acquire_timeout_s=s.db_acquire_timeout_s)
    return app.state.audit_pool


async def close_audit_pool(app: FastAPI) -> None:
    pool, app.state.audit_pool = app.state.audit_pool, None
    if pool is not None:
        await pool.close()


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


@dataclass(frozen=True)
class _RouteGuard:
    path: str
    path_regex: Any
    methods: frozenset[str]
    guarded: bool


def _has_role_guard(dependant: Any) -> bool:
    """Does the route admit only some roles (a `require(...)` dependency anywhere in it)?"""
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        if hasattr(dep.call, "allowed_roles"):
            return True
        stack.extend(dep.dependencies)
    return False


def route_guards(app: FastAPI) -> list[_RouteGuard]:
    """Every route of the app, included routers flattened, in matching order."""
    guards: list[_RouteGuard] = []
    for route in app.routes:
        contexts: list[Any] = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            if getattr(ctx, "path_regex", None) is None:
                continue
            guards.append(_RouteGuard(ctx.path, ctx.path_regex, frozenset(getattr(ctx, "methods", None) or ()),
                                      _has_role_guard(getattr(ctx, "dependant", None))))
    return guards


class RequestGate:
    """ASGI middleware: a body limit per route (413 on Content-Length or on the bytes streamed
    past it, before parsing) and authentication before the body is read: a guarded route
    without a valid token answers 401 whatever the body, and the 401 is audited (issue 16)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._routes: list[_RouteGuard] | None = None

    def _limit(self, scope: Scope) -> int:
        settings: ServiceSettings = self.api.state.runtime.settings
        if scope["method"] == "POST" and scope["path"].startswith("/events/"):
            return settings.http_max_event_body_bytes
        return settings.http_route_body_limits.get(f"{scope['method']} {scope['path']}", settings.http_max_body_bytes)

    def _route_of(self, scope: Scope) -> _RouteGuard | None:
        if self._routes is None:
            self._routes = route_guards(self.api)
        for route in self._routes:
            if scope["method"] in route.methods and route.path_regex.match(scope["path"]):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route_of(scope)
        if route is not None and route.guarded:  # first: no token is a 401 whatever the body
            request = Request(scope)
            try:
                scope["rekisteri.principal"] = authenticate(request)
            except NotAuthenticated as exc:
                await self._audit_unauthenticated(request, route, exc.message)
                await _answer(send, 401, exc.code, exc.message)
                return
        limit = self._limit(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413, "too_large", f"the request body is larger than {limit} bytes")
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _answer(send, 413, "too_large", str(exc.detail))

    async def _audit_unauthenticated(self, request: Request, route: Any, reason: str) -> None:
        """401s are audited like 403s, without the token (issue 16)."""
        try:
            await self.api.state.audit_denial(None, f"{request.method} {route.path}", outcome="unauthenticated",
                                              details={"reason": reason, "path": request.url.path})
        except (*INFRASTRUCTURE_ERRORS, asyncpg.PostgresError) as exc:
            log.error("audit_unauthenticated_failed", error=type(exc).__name__)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


MAX_ACCEPT_BATCH = 10_000


class EventBatch(BaseModel):
    """Envelopes exactly as they would be published on the topic (SPEC §4)."""

    model_config = ConfigDict(json_schema_extra=with_example({"events": [{
        "id": "5b0f4c1e-8a55-4f0e-9d6b-2f4b0a7c9e11", "type": "usage-recorded", "source": "crm",
        "time": "2025-03-01T09:30:00+02:00", "correlation_id": "5b0f4c1e-8a55-4f0e-9d6b-2f4b0a7c9e12",
        "schema_version": 1, "payload": {}}]}))

    events: list[Any] = Field(min_length=1, max_length=MAX_ACCEPT_BATCH)


class AcceptOutcome(BaseModel):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"accepted": 1, "duplicates": 0, "rejected": [{"index": 2, "reason": "payload: missing field meter"}]}))

    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]


def event_accept_router(runtime: ServiceRuntime) -> APIRouter:
    """`POST /events/{topic}`: a durable accept for other company systems (SPEC §8).

    202 only after the PostgreSQL commit; the same (source, id) dedupe as the topic path,
    because both go through the same inbox consumer.
    """
    router = APIRouter(tags=["events"])

    @router.post("/events/{topic}", status_code=202, response_model=AcceptOutcome, responses=errors(404, 503),
                 summary="Accept a batch of envelopes for a topic this service consumes")
    async def accept_events(topic: str, batch: EventBatch,
                            _principal: Any = Depends(require(Role.service))) -> AcceptOutcome:  # noqa: B008 - FastAPI's dependency marker
        consumer = runtime.consumers.get(topic)
        spec = CATALOGUE.get(topic)
        if consumer is None or spec is None or EXTERNAL not in spec.producers:
            raise NotFound(f"this service accepts no events for topic {topic!r} over HTTP",
                           fields={"topic": "not a topic this service accepts from other systems"})
        incoming = [Incoming(json.dumps(e, separators=(",", ":")).encode())
                    for e in batch.events]
        try:
            outcome = await consumer.handle_batch(incoming, wait_for_database=False)
        except INFRASTRUCTURE_ERRORS as exc:  # nothing committed: no 202, the sender retries (SPEC §8)
            log.warning("event_accept_database_unavailable", topic=topic, error=type(exc).__name__)
            return JSONResponse(error_body("unavailable", "the database is not available; retry the batch"),
                                status_code=503)  # type: ignore[return-value]
        return AcceptOutcome(accepted=outcome.accepted, duplicates=outcome.duplicates, rejected=outcome.rejected)

    return router


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def authenticate(request: Request) -> Principal:
    """The request's principal: a token signed with this register's secret, issued by it,
    for this service (`aud`), and no longer-lived than its role allows. Verified once, by
    the gate, and kept in the scope."""
    principal: Principal | None = request.scope.get("rekisteri.principal")
    if principal is not None:
        return principal
    settings = runtime_of(request).settings
    return verify_token(settings.rekisteri_token_secret, bearer_of(request), audience=runtime_of(request).name,
                        issuer=settings.rekisteri_token_issuer, max_lifetime_s=settings.token_max_lifetime_s)


# `Depends(require(Role.register_owner, Role.register_user))` admits only those roles.
require = role_guard(authenticate)
