"""Bearer-token auth with the roles of SPEC §5, and the audit of who read what (R10).

Tokens are HS256-signed JWTs naming the user (`sub`), the role, and for self-service
users (`subject`) their person id. Anything a role is not granted is denied, and every
denial is written to the service's append-only audit log.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Awaitable, Callable

import asyncpg
import jwt
from fastapi import Request

from shared.errors import Forbidden, NotAuthenticated
from shared.logging import get_logger

log = get_logger(__name__)
ALGORITHM = "HS256"


class Role(StrEnum):
    register_owner = "register_owner"
    register_user = "register_user"
    marketing = "marketing"
    billing = "billing"
    subject = "subject"
    service = "service"


@dataclass(frozen=True)
class Principal:
    user: str
    role: Role
    person_id: uuid.UUID | None = None


def mint_token(secret: str, *, user: str, role: Role | str, person_id: uuid.UUID | str | None = None,
               ttl_s: int = 8 * 3600) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "role": Role(role).value, "iat": now, "exp": now + ttl_s}
    if person_id is not None:
        claims["person_id"] = str(person_id)
    if Role(role) is Role.subject and person_id is None:
        raise ValueError("a subject token must name the person it belongs to")
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "role"]})
        role = Role(claims["role"])
        person_id = uuid.UUID(claims["person_id"]) if claims.get("person_id") else None
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("the bearer token has expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError):
        raise NotAuthenticated("the bearer token is not valid") from None
    if role is Role.subject and person_id is None:
        raise NotAuthenticated("a subject token must name its person")
    return Principal(user=str(claims["sub"]), role=role, person_id=person_id)


def principal_from_request(request: Request, secret: str) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("an 'Authorization: Bearer <token>' header is required")
    return verify_token(secret, token.strip())


async def write_audit(conn: asyncpg.Connection | asyncpg.Pool, principal: Principal | None, action: str, *,
                      person_id: uuid.UUID | None = None, target: str | None = None, outcome: str = "allowed",
                      details: dict[str, Any] | None = None) -> None:
    """One append-only audit row (R10): who, role, whose data, what, when. Ids only."""
    await conn.execute(
        "INSERT INTO audit_log (actor, role, action, person_id, target, outcome, details)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        principal.user if principal else "anonymous", principal.role.value if principal else "none",
        action, person_id, target, outcome, details or {},
    )


def role_guard(secret_of: Callable[[Request], str], pool_of: Callable[[Request], asyncpg.Pool]
               ) -> Callable[..., Callable[[Request], Awaitable[Principal]]]:
    """Build `require(*roles)`: a FastAPI dependency that admits only the named roles."""

    def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
        allowed = frozenset(roles)

        async def dependency(request: Request) -> Principal:
            principal = principal_from_request(request, secret_of(request))
            if principal.role not in allowed:
                await deny(pool_of(request), principal, f"{request.method} {request.url.path}")
            return principal

        dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the access-control tests
        return dependency

    return require


async def deny(pool: asyncpg.Pool, principal: Principal, action: str, *, person_id: uuid.UUID | None = None) -> None:
    """Audit-log a denial and raise 403 (SPEC §5: denials are logged)."""
    await write_audit(pool, principal, action, person_id=person_id, outcome="denied")
    log.warning("access_denied", user=principal.user, role=principal.role.value, action=action,
                person_id=str(person_id) if person_id else None)
    raise Forbidden(f"role {principal.role.value} may not do this")
