"""A tiny OpenID Connect provider for the portal's single sign-on tests: discovery, an
authorization endpoint that consents at once for the claims the test set, a token endpoint
that checks PKCE, and its JWKS. Loopback only; nothing like a real provider's security."""
from __future__ import annotations

import secrets
import time
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey


class FakeProvider:
    def __init__(self) -> None:
        self.issuer = ""  # set once served
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"]}

        @app.get("/authorize")
        async def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"], "client_id": q["client_id"],
                                "redirect_uri": q["redirect_uri"], "claims": dict(self.claims)}
            return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", status_code=303)

        @app.post("/token")
        async def token(code: str = Form(), code_verifier: str = Form(), client_id: str = Form(),
                        redirect_uri: str = Form()) -> JSONResponse:
            grant = self.codes.pop(code, None)
            if grant is None or create_s256_code_challenge(code_verifier) != grant["challenge"] \
                    or redirect_uri != grant["redirect_uri"] or client_id != grant["client_id"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                      **grant["claims"]}
            id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)
            return JSONResponse({"access_token": "opaque", "token_type": "Bearer", "id_token": id_token})

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False)]}

        return app
