"""The portal's `/readyz` answers within its bound (issue 20): a database that stops answering
made the check wait as long as the query did (an operator's probe saw no answer at all), and
the services' health was asked one after the other, 2 s each."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
from fastapi import FastAPI

from services.portal.app import _install_operations_routes
from services.portal.backends import Backends
from shared.metrics import Metrics
from tests.helpers import scaled


class DatabaseThatNeverAnswers:
    async def fetchval(self, query: str) -> int:
        await asyncio.Event().wait()
        return 1


class DatabaseThatAnswers:
    async def fetchval(self, query: str) -> int:
        return 1


def portal_app(pool: object, backends: Backends | None) -> FastAPI:
    app = FastAPI()
    _install_operations_routes(app, SimpleNamespace(pool=pool, backends=backends, metrics=Metrics("portal")))  # type: ignore[arg-type]
    return app


async def readiness(app: FastAPI) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
        return await asyncio.wait_for(client.get("/readyz"), timeout=scaled(30))


async def test_portal_readiness_answers_503_when_the_database_stops_answering():
    response = await readiness(portal_app(DatabaseThatNeverAnswers(), None))
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False}


async def test_portal_readiness_asks_every_service_at_the_same_time():
    """Each service's `/healthz` answers only once every service has been asked: asked one
    after the other, none answers and all are reported down."""
    names = ("contacts", "consent", "retention", "billing")
    asked: set[str] = set()
    everyone_asked = asyncio.Event()

    def transport(name: str) -> httpx.MockTransport:
        async def health(request: httpx.Request) -> httpx.Response:
            asked.add(name)
            if asked == set(names):
                everyone_asked.set()
            try:
                await asyncio.wait_for(everyone_asked.wait(), timeout=scaled(5))
            except TimeoutError:
                raise httpx.ReadTimeout("not every service was asked", request=request) from None
            return httpx.Response(200, json={"status": "ok"})
        return httpx.MockTransport(health)

    backends = Backends({name: f"http://{name}" for name in names}, "x" * 32, 60, 2.0,
                        transports={name: transport(name) for name in names})
    try:
        response = await readiness(portal_app(DatabaseThatAnswers(), backends))
    finally:
        await backends.aclose()
    assert response.status_code == 200
    assert response.json()["services"] == {name: True for name in names}
