"""Who may act at consent: `require(*roles)`, and a data subject's token only while contacts
has not revoked it (issue 16 finding 7: a password change, a disabled account or an erasure
ends every earlier self-service token at every service that accepts them, not just at contacts).
Consent learns of revocations from `subject-tokens-revoked`; it never asks contacts."""
from __future__ import annotations

from typing import Awaitable, Callable

from fastapi import Depends, Request

from services.consent import storage
from shared.errors import NotAuthenticated
from shared.web.auth import Principal, Role, audit_denial
from shared.web.http import require, runtime_of


def require_live(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    base = require(*roles)

    async def dependency(request: Request, principal: Principal = Depends(base)) -> Principal:
        if principal.role is Role.subject and principal.person_id is not None and await storage.subject_token_revoked(
                runtime_of(request).pool, principal.person_id, principal.token_version):
            await audit_denial(request, principal, f"{request.method} {request.url.path}",
                               person_id=principal.person_id, outcome="unauthenticated",
                               details={"reason": "token revoked"})
            raise NotAuthenticated("the bearer token has been revoked")
        return principal

    return dependency  # its roles are `base`'s, which the access-control tests read
