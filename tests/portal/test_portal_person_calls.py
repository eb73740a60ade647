"""The owner's person page asks the services at once (issue 19: p95 <= 150 ms per page), and a
register user's asks contacts first so nothing else is asked about a person contacts refuses
them (R6). One handler (`person_context`) against in-memory HTTP transports: no network."""
from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from services.portal import pages_person
from services.portal.backends import Backends
from services.portal.sessions import WebSession
from services.portal.web import PageError

PID = uuid.uuid4()
ANSWERS: dict[str, Any] = {
    f"/persons/{PID}": {"person": {"id": str(PID), "first_name": "A", "last_name": "B"}, "field_sources": {}},
    f"/persons/{PID}/consents": {"consents": []},
    f"/persons/{PID}/retention": {"person_id": str(PID), "state": "ended", "passivation_due": "2027-01-01",
                                  "disposition_due": "2027-12-01", "rule": "R7", "basis": "relationship_ended",
                                  "holds": [], "blocked": False, "overdue_since": None},
    f"/evidence/{PID}": {"items": []},
    f"/audit/persons/{PID}": {"entries": []},
    "/access-requests": {"access_requests": []},
}


def request_with(transports: dict[str, httpx.AsyncBaseTransport]) -> Any:
    backends = Backends({name: f"http://{name}" for name in transports}, "x" * 40, 60, 5.0, transports)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(portal=SimpleNamespace(backends=backends))),
                           query_params={})


def services(handler: Any) -> dict[str, httpx.AsyncBaseTransport]:
    return {name: httpx.MockTransport(handler) for name in ("contacts", "consent", "retention", "billing")}


async def test_the_owners_person_page_asks_every_service_at_once():
    """Every call must be in flight before any is answered: a barrier of six that a sequential
    page (contacts first, as it was) never passes."""
    barrier, asked = asyncio.Barrier(6), []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        await asyncio.wait_for(barrier.wait(), timeout=5)
        return httpx.Response(200, json=ANSWERS[request.url.path])

    context = await pages_person.person_context(request_with(services(handler)),
                                                WebSession("staff", "omistaja", "register_owner"), PID)
    assert sorted(asked) == sorted(ANSWERS) and context["retention"]["rule"] == "R7"


async def test_a_register_user_is_told_not_found_and_nothing_else_is_asked():
    asked = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(403, json={"error": "forbidden", "message": "passive", "fields": {}})

    with pytest.raises(PageError) as refused:
        await pages_person.person_context(request_with(services(handler)),
                                          WebSession("staff", "kayttaja", "register_user"), PID)
    assert refused.value.status == 404 and asked == [f"/persons/{PID}"]
