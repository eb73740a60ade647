"""OpenID Connect single sign-on for staff (SPEC §7, the production option): the
authorization code flow with PKCE against the configured issuer; the ID token's signature
(the issuer's JWKS), issuer, audience, expiry and nonce are checked, and a role claim is
mapped to one register role. A staff member whose claims map to no role is refused.

Configured by PORTAL_OIDC_ISSUER, PORTAL_OIDC_CLIENT_ID (and _SECRET for a confidential
client), PORTAL_OIDC_ROLE_CLAIM and PORTAL_OIDC_ROLE_MAP. authlib gives the PKCE and state
helpers, joserfc (authlib's JOSE successor) verifies the token."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.portal.accounts import STAFF_ROLES
from services.portal.settings import PortalSettings

FLOW_COOKIE = "rk_oidc"
FLOW_MAX_AGE_S = 600
DISCOVERY_TTL_S = 3600


class OidcError(Exception):
    """The sign-in cannot be completed; `key` names the message shown."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def role_from_claims(claims: dict[str, Any], claim: str, role_map: dict[str, str]) -> str | None:
    """The most privileged register role any of the claim's values maps to (None: not staff here)."""
    values = claims.get(claim)
    if isinstance(values, str):
        values = values.split()
    mapped = {role_map.get(str(v)) for v in values or []}
    return next((role for role in STAFF_ROLES if role in mapped), None)


class OidcClient:
    def __init__(self, settings: PortalSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.issuer = (settings.portal_oidc_issuer or "").rstrip("/")
        self._http = httpx.AsyncClient(timeout=10, transport=transport)
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._jwks: KeySet | None = None
        self._secret = settings.rekisteri_token_secret.encode()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovery[0] > DISCOVERY_TTL_S:
            try:
                answer = await self._http.get(f"{self.issuer}/.well-known/openid-configuration")
                answer.raise_for_status()
                doc = answer.json()
            except (httpx.HTTPError, ValueError):
                raise OidcError("oidc.unavailable") from None
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError("oidc.unavailable")
            self._discovery, self._jwks = (time.monotonic(), doc), None
        return self._discovery[1]

    async def keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            answer = await self._http.get((await self.metadata())["jwks_uri"])
            answer.raise_for_status()
            self._jwks = KeySet.import_key_set(answer.json())
        return self._jwks

    # -- the flow's state travels in a signed, short-lived cookie (no server-side row before sign-in)
    def _sign(self, data: dict[str, Any]) -> str:
        body = urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
        mac = hmac.new(self._secret, b"oidc-flow:" + body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _unsign(self, value: str | None) -> dict[str, Any]:
        body, _, mac = (value or "").rpartition(".")
        good = hmac.new(self._secret, b"oidc-flow:" + body.encode(), hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(mac, good):
            raise OidcError("oidc.state")
        data = json.loads(urlsafe_b64decode(body.encode()))
        if time.time() - data["at"] > FLOW_MAX_AGE_S:
            raise OidcError("oidc.state")
        return data

    async def start(self, redirect_uri: str) -> tuple[str, str]:
        """The authorization URL to send the browser to, and the flow cookie's value."""
        meta = await self.metadata()
        flow = {"state": generate_token(32), "nonce": generate_token(32), "verifier": generate_token(64),
                "redirect_uri": redirect_uri, "at": int(time.time())}
        params = {"response_type": "code", "client_id": self.settings.portal_oidc_client_id, "scope": "openid profile",
                  "redirect_uri": redirect_uri, "state": flow["state"], "nonce": flow["nonce"],
                  "code_challenge": create_s256_code_challenge(flow["verifier"]), "code_challenge_method": "S256"}
        return str(httpx.URL(meta["authorization_endpoint"], params=params)), self._sign(flow)

    async def finish(self, cookie: str | None, state: str | None, code: str | None) -> tuple[str, str]:
        """(username, role) of the signed-in staff member, after every check of the ID token."""
        flow = self._unsign(cookie)
        if not state or not code or not hmac.compare_digest(state, flow["state"]):
            raise OidcError("oidc.state")
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect_uri"],
                "client_id": self.settings.portal_oidc_client_id, "code_verifier": flow["verifier"]}
        auth = None
        if self.settings.portal_oidc_client_secret:
            auth = (self.settings.portal_oidc_client_id or "", self.settings.portal_oidc_client_secret)
        try:
            answer = await self._http.post(meta["token_endpoint"], data=form, auth=auth)  # type: ignore[arg-type]  # None: no client auth
            answer.raise_for_status()
            id_token = answer.json()["id_token"]
        except (httpx.HTTPError, ValueError, KeyError):
            raise OidcError("oidc.failed") from None
        claims = await self._verify(id_token, flow["nonce"])
        role = role_from_claims(claims, self.settings.portal_oidc_role_claim, self.settings.portal_oidc_role_map)
        if role is None:
            raise OidcError("oidc.no_role")
        return str(claims.get("preferred_username") or claims["sub"]), role

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer}, aud={"essential": True,
                                                                "value": self.settings.portal_oidc_client_id},  # type: ignore[typeddict-item]  # set whenever OIDC is on (app.py)
            sub={"essential": True}, exp={"essential": True}, nonce={"essential": True, "value": nonce})
        for refresh in (False, True):  # an unknown key id: the issuer may have rotated its keys
            try:
                token = jwt.decode(id_token, await self.keys(refresh), algorithms=["RS256", "ES256", "PS256"])
                registry.validate(token.claims)
                return token.claims
            except JoseError:
                if refresh:
                    raise OidcError("oidc.failed") from None
            except (httpx.HTTPError, ValueError):
                raise OidcError("oidc.failed") from None
        raise OidcError("oidc.failed")
