"""A request that meets PostgreSQL away (restarting, refusing) answers 503 with the SPEC §7
body and Retry-After, not a 500 with a traceback in the log: the chaos soak (issue 20) saw
consent's `GET /checks` answer 500 while PostgreSQL restarted."""
from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.web.http import install_error_handlers


def app_raising(exc: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/checks")
    async def checks() -> dict:
        raise exc

    return app


@pytest.mark.parametrize("exc", [ConnectionRefusedError(111, "refused"), asyncpg.CannotConnectNowError("starting"),
                                 asyncpg.ConnectionDoesNotExistError("closed")])
async def test_a_database_away_answers_503_with_retry_after_and_the_error_body(exc):
    transport = httpx.ASGITransport(app=app_raising(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://consent") as client:
        response = await client.get("/checks")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"error": "unavailable", "message": "a dependency of the service is not available; retry",
                               "fields": {}}


async def test_any_other_failure_is_still_a_500_internal_error():
    transport = httpx.ASGITransport(app=app_raising(RuntimeError("bug")), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://consent") as client:
        response = await client.get("/checks")
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
