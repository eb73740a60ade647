"""Driving the portal over HTTP as a browser would (cookies kept by hand: they are Secure,
and the tests speak plain HTTP on loopback), and seeding the register through the services."""
from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie
from typing import Any

import httpx

from shared.web.auth import Role
from tests.helpers import auth

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
OWNER = auth(Role.register_owner, user="seeder")


class PortalClient:
    def __init__(self, base_url: str, **headers: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=30, headers=headers)
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    async def aclose(self) -> None:
        await self.http.aclose()

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            parsed = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def _cookie_header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return self._keep(await self.http.get(path, headers=self._cookie_header(), **kw))

    async def csrf(self, path: str = "/login") -> str:
        page = await self.get(path)
        return CSRF.search(page.text).group(1)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   files: dict[str, Any] | None = None) -> httpx.Response:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf", self.cookies.get("rk_csrf") or await self.csrf())
        return self._keep(await self.http.post(path, data=data, files=files, headers=self._cookie_header()))

    async def staff_sign_in(self, username: str, password: str, totp: str = "") -> httpx.Response:
        await self.csrf("/login")
        return await self.post("/login", {"username": username, "password": password, "totp": totp})

    async def subject_sign_in(self, username: str, password: str) -> httpx.Response:
        await self.csrf("/me/login")
        return await self.post("/me/login", {"username": username, "password": password})


async def new_person(contacts: Any, *, last_name: str | None = None, email: str | None = None,
                     organisation_id: str | None = None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    body = {"organisation_id": organisation_id, "first_name": "Testi", "last_name": last_name or f"Henkilö{tag}",
            "emails": [email or f"p{tag}@example.fi"], "phones": [], "legal_basis": "customer_relationship",
            "purposes": ["customer_relationship"], "title": "Hankintapäällikkö"}
    resp = await contacts.http.post("/persons", json=body, headers=OWNER)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def new_account(contacts: Any, person_id: str, password: str) -> str:
    """A self-service account as contacts opens one: staff get a single-use activation code (R11;
    staff never set the password), and the person sets their own password with it."""
    username = f"user{uuid.uuid4().hex[:10]}"
    resp = await contacts.http.post(f"/persons/{person_id}/account", headers=OWNER, json={"username": username})
    assert resp.status_code == 201, resp.text
    activated = await contacts.http.post("/auth/activate", json={
        "username": username, "code": resp.json()["activation_code"], "new_password": password})
    assert activated.status_code == 200, activated.text
    return username
