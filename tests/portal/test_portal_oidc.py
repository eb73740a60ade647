"""Single sign-on for staff by OpenID Connect (SPEC §7), against a fake local provider: the
code flow with PKCE, the ID token verified, the role claim mapped; no mapped role, no entry."""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from services.portal import i18n
from services.portal.app import build_app
from services.portal.oidc import role_from_claims
from services.portal.settings import PortalSettings
from tests.conftest import service_test_settings
from tests.portal.conftest import free_port, serve, shutdown
from tests.portal.fake_oidc import FakeProvider
from tests.portal.helpers import PortalClient

ROLE_MAP = {"rekisteri-owners": "register_owner", "rekisteri-users": "register_user", "markkinointi": "marketing"}


def test_the_most_privileged_mapped_role_wins_and_unmapped_values_give_none():
    assert role_from_claims({"roles": ["markkinointi", "rekisteri-owners"]}, "roles", ROLE_MAP) == "register_owner"
    assert role_from_claims({"groups": "other rekisteri-users"}, "groups", ROLE_MAP) == "register_user"
    assert role_from_claims({"roles": ["admins"]}, "roles", ROLE_MAP) is None
    assert role_from_claims({}, "roles", ROLE_MAP) is None


@pytest.fixture(scope="module")
async def sso(stack, infra, database_url):
    provider = FakeProvider()
    provider_port, portal_port = free_port(), free_port()
    provider.issuer = f"http://127.0.0.1:{provider_port}"
    provider_server = await serve(provider.app, provider_port)
    settings = PortalSettings(**service_test_settings(infra, database_url, rekisteri_dev_stack=True), **{
        f"portal_{name}_url": url for name, url in stack.urls.items()}, portal_port=portal_port,
        portal_oidc_issuer=provider.issuer, portal_oidc_client_id="rekisteri-portal",
        portal_oidc_role_map=ROLE_MAP, argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
    portal_server = await serve(build_app(settings), portal_port, lifespan="on")
    yield provider, f"http://127.0.0.1:{portal_port}"
    await shutdown(portal_server)
    await shutdown(provider_server)


async def _through_provider(client: PortalClient) -> httpx.Response:
    start = await client.get("/login/oidc")
    assert start.status_code == 303
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    assert back.status_code == 303
    callback = urlsplit(back.headers["location"])
    return await client.get(f"{callback.path}?{callback.query}")


async def test_staff_member_signs_in_by_sso_with_the_mapped_role(sso):
    provider, url = sso
    provider.claims = {"sub": "u-123", "preferred_username": "riikka", "roles": ["rekisteri-owners"]}
    client = PortalClient(url)
    try:
        assert i18n.translate("fi", "login.oidc") in (await client.get("/login")).text
        done = await _through_provider(client)
        assert done.status_code == 303 and done.headers["location"] == "/staff"
        page = await client.get("/staff/queues")  # owner only: the mapped role reached the services
        assert page.status_code == 200 and "riikka" in page.text
    finally:
        await client.aclose()


async def test_sso_without_a_mapped_role_is_refused(sso):
    provider, url = sso
    provider.claims = {"sub": "u-456", "preferred_username": "outsider", "roles": ["admins"]}
    client = PortalClient(url)
    try:
        refused = await _through_provider(client)
        assert refused.status_code == 403 and i18n.translate("fi", "oidc.no_role") in refused.text
        assert "rk_session" not in client.cookies
    finally:
        await client.aclose()


async def test_sso_callback_with_a_forged_state_is_refused(sso):
    provider, url = sso
    provider.claims = {"sub": "u-789", "roles": ["rekisteri-owners"]}
    client = PortalClient(url)
    try:
        start = await client.get("/login/oidc")
        async with httpx.AsyncClient() as browser:
            back = await browser.get(start.headers["location"])
        callback = urlsplit(back.headers["location"])
        forged = callback.query.replace("state=", "state=x")
        refused = await client.get(f"{callback.path}?{forged}")
        assert refused.status_code == 400 and "rk_session" not in client.cookies
        stranger = PortalClient(url)  # a callback without the flow cookie (another browser)
        try:
            assert (await stranger.get(f"{callback.path}?{callback.query}")).status_code == 400
        finally:
            await stranger.aclose()
    finally:
        await client.aclose()
