"""The four services' HTTP APIs as the portal calls them: with the signed-in user's bearer
token, errors turned into one exception carrying the SPEC §7 body (status, code, fields)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.logging import get_logger
from shared.web.auth import mint_token

from services.portal.sessions import WebSession

log = get_logger(__name__)


@dataclass
class ServiceError(Exception):
    """A service answered 4xx/5xx, or did not answer (status 503, code "unavailable")."""

    status: int
    code: str
    message: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class Backends:
    """One pooled HTTP client per service; `call` returns the decoded JSON (or text)."""

    def __init__(self, urls: dict[str, str], token_secret: str, staff_token_ttl_s: int, timeout_s: float,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self._secret = token_secret
        self._ttl = staff_token_ttl_s
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s,
                                    transport=(transports or {}).get(name))
            for name, url in urls.items()}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    def token_for(self, session: WebSession) -> str:
        """A short-lived token minted for this request: the staff member's role, or a data
        subject's own person (contacts verified their password at sign-in). No token is stored."""
        return mint_token(self._secret, user=session.username, role=session.role, person_id=session.person_id,
                          ttl_s=self._ttl)

    async def call(self, session: WebSession | None, service: str, method: str, path: str, *,
                   json: Any = None, params: dict[str, Any] | None = None, raw: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token_for(session)}"} if session else {}
        started = time.perf_counter()
        try:
            response = await self._clients[service].request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("backend_unavailable", service=service, error=type(exc).__name__)
            raise ServiceError(503, "unavailable", f"{service} did not answer") from None
        finally:
            elapsed = time.perf_counter() - started
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            log.info("backend_error", service=service, status=response.status_code, code=body.get("error"),
                     seconds=round(elapsed, 4))
            raise ServiceError(response.status_code, str(body.get("error") or "error"), str(body.get("message") or ""),
                               {str(k): str(v) for k, v in (body.get("fields") or {}).items()})
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def healthy(self, timeout: float) -> dict[str, bool]:
        """Each service's `/healthz`, asked at once and each bounded by `timeout`, so the
        portal's readiness answers within one bound whichever service hangs."""
        async def one(client: httpx.AsyncClient) -> bool:
            try:
                return (await client.get("/healthz", timeout=timeout)).status_code == 200
            except httpx.HTTPError:
                return False

        answers = await asyncio.gather(*(one(client) for client in self._clients.values()))
        return dict(zip(self._clients, answers))
