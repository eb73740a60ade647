"""The HTTP face every service shares: health, readiness, metrics, API documents, and
the one mapping from errors to SPEC §7 bodies. Validation errors name fields and
rules, never the values sent (they may be personal)."""
from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

import json

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.messaging.asyncapi import build_asyncapi
from shared.web.auth import Role, role_guard
from shared.messaging.consumer import INFRASTRUCTURE_ERRORS, Incoming
from shared.errors import NotFound, RegisterError
from shared.messaging.topics import CATALOGUE, EXTERNAL
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

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
        return JSONResponse(error_body(exc.code, exc.message, exc.fields), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        message = "invalid input: " + "; ".join(f"{k}: {v}" for k, v in list(fields.items())[:5])
        return JSONResponse(error_body("validation_error", message, fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("http_unhandled_error", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(error_body("internal_error", "the service failed to handle the request"), status_code=500)


def create_http_app(runtime: "ServiceRuntime", routers: list[APIRouter], *, description: str) -> FastAPI:
    """A service's FastAPI app; its lifespan starts and stops the whole runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=f"Rekisteri {runtime.name}", version="1.0.0", description=description, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        runtime.metrics.http_requests.labels(
            method=request.method, route=getattr(route, "path", "unmatched"), status=str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get("/readyz", tags=["operations"], summary="Its database and the broker answer")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        await runtime.refresh_gauges()
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/asyncapi.json", tags=["operations"], summary="Topics this service publishes and consumes")
    async def asyncapi() -> dict[str, Any]:
        return build_asyncapi(runtime.name)

    app.include_router(event_accept_router(runtime))
    for router in routers:
        app.include_router(router)
    return app


MAX_ACCEPT_BATCH = 10_000


class EventBatch(BaseModel):
    """Envelopes exactly as they would be published on the topic (SPEC §4)."""

    events: list[Any] = Field(min_length=1, max_length=MAX_ACCEPT_BATCH)


class AcceptOutcome(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]


def event_accept_router(runtime: "ServiceRuntime") -> APIRouter:
    """`POST /events/{topic}`: a durable accept for other company systems (SPEC §8).

    202 only after the PostgreSQL commit; the same (source, id) dedupe as the topic path,
    because both go through the same inbox consumer.
    """
    router = APIRouter(tags=["events"])

    @router.post("/events/{topic}", status_code=202, response_model=AcceptOutcome,
                 summary="Accept a batch of envelopes for a topic this service consumes")
    async def accept_events(topic: str, batch: EventBatch,
                            _principal: Any = Depends(require(Role.service, Role.register_owner))) -> AcceptOutcome:
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


def runtime_of(request: Request) -> "ServiceRuntime":
    return request.app.state.runtime


def _secret_of(request: Request) -> str:
    return runtime_of(request).settings.rekisteri_token_secret


def _pool_of(request: Request):  # noqa: ANN202 - asyncpg.Pool
    return runtime_of(request).pool


# `Depends(require(Role.register_owner, Role.register_user))` admits only those roles.
require = role_guard(_secret_of, _pool_of)
