"""Settings of the portal, read once at start-up (SPEC §7: environment, embedded-stack defaults)."""
from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import PlatformSettings


class PortalSettings(PlatformSettings):
    # The four services' HTTP APIs; the defaults are the embedded stack's ports.
    portal_contacts_url: str = "http://127.0.0.1:8001"
    portal_consent_url: str = "http://127.0.0.1:8002"
    portal_retention_url: str = "http://127.0.0.1:8003"
    portal_billing_url: str = "http://127.0.0.1:8004"
    portal_service_timeout_s: float = 15.0
    # Cookies are Secure by default; browsers accept them over http://localhost and 127.0.0.1 too.
    portal_cookie_secure: bool = True
    # A session unused this long is signed out; none lives longer than the maximum.
    portal_idle_timeout_s: int = Field(default=15 * 60, ge=10)
    portal_session_max_s: int = Field(default=8 * 3600, ge=60)
    # The bearer token towards the services, minted per request for the signed-in user, lives this long.
    portal_staff_token_ttl_s: int = Field(default=300, ge=30)
    # argon2id cost of staff passwords (the contacts service's profile).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # OpenID Connect single sign-on for staff (optional): see README "Portal".
    portal_oidc_issuer: str | None = None
    portal_oidc_client_id: str | None = None
    portal_oidc_client_secret: str | None = None
    # Where the provider sends the browser back; by default this portal's /login/oidc/callback.
    portal_oidc_redirect_url: str | None = None
    portal_oidc_role_claim: str = "roles"
    # JSON object: claim value -> register role, e.g. {"rekisteri-owners": "register_owner"}.
    # Empty (as docker-compose passes an unset variable) is no mapping.
    portal_oidc_role_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Version of the privacy notice the marketing choices page shows (recorded with each choice).
    portal_notice_version: str = "2024-1"

    @field_validator("portal_oidc_role_map", mode="before")
    @classmethod
    def _role_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @property
    def schema(self) -> str:  # type: ignore[override]  # shadows pydantic v1's deprecated schema(), never called
        return "portal"

    @property
    def port(self) -> int:
        """What `rekisteri serve portal` listens on (PORTAL_PORT, in the platform's settings)."""
        return self.portal_port

    def service_urls(self) -> dict[str, str]:
        return {"contacts": self.portal_contacts_url, "consent": self.portal_consent_url,
                "retention": self.portal_retention_url, "billing": self.portal_billing_url}
