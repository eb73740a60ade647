"""Bearer-token auth with the roles of SPEC §5, and the audit of who read what (R10).

Tokens are HS256-signed JWTs naming the user (`sub`), the role, the issuer (`iss`), the
services they are for (`aud`), and for self-service users (`subject`) their person id and
account token version (`tv`). Anything a role is not granted is denied, and every
denial is written to the service's append-only audit log.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Awaitable, Callable, Sequence

import asyncpg
import jwt
from fastapi import Request

from shared.errors import Forbidden, NotAuthenticated
from shared.logging import get_logger
from shared.settings import SERVICE_NAMES

log = get_logger(__name__)
ALGORITHM = "HS256"
ISSUER = "rekisteri"


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
    # Subject tokens: the account's token version when minted (a change revokes older tokens),
    # and when the person last entered their password (fresh authentication for lifting a ban).
    token_version: int | None = None
    auth_time: int | None = None


def mint_token(secret: str, *, user: str, role: Role | str, person_id: uuid.UUID | str | None = None,
               ttl_s: int = 8 * 3600, audience: str | Sequence[str] = SERVICE_NAMES, issuer: str = ISSUER,
               token_version: int | None = None, auth_time: int | None = None) -> str:
    """A signed token for `audience` (the service or services that accept it)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "role": Role(role).value, "iat": now, "exp": now + ttl_s,
                              "iss": issuer, "aud": [audience] if isinstance(audience, str) else list(audience)}
    if person_id is not None:
        claims["person_id"] = str(person_id)
    if token_version is not None:
        claims["tv"] = token_version
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if Role(role) is Role.subject and person_id is None:
        raise ValueError("a subject token must name the person it belongs to")
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, audience: str | None = None, issuer: str = ISSUER,
                 max_lifetime_s: Callable[[str], int] | None = None) -> Principal:
    """The principal of a valid token: right signature, issuer and audience (this service),
    not expired, and no longer-lived than its role allows (a 100-year token is refused)."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
                            options={"require": ["sub", "exp", "iat", "iss", "aud", "role"],
                                     "verify_aud": audience is not None})
        role = Role(claims["role"])
        person_id = uuid.UUID(claims["person_id"]) if claims.get("person_id") else None
        token_version = int(claims["tv"]) if claims.get("tv") is not None else None
        auth_time = int(claims["auth_time"]) if claims.get("auth_time") is not None else None
        lifetime = int(claims["exp"]) - int(claims["iat"])
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("the bearer token has expired") from None
    except jwt.InvalidAudienceError:
        raise NotAuthenticated("the bearer token is not for this service") from None
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
        raise NotAuthenticated("the bearer token is not valid") from None
    if max_lifetime_s is not None and lifetime > max_lifetime_s(role.value):
        raise NotAuthenticated("the bearer token lives longer than its role allows")
    if role is Role.subject and person_id is None:
        raise NotAuthenticated("a subject token must name its person")
    return Principal(user=str(claims["sub"]), role=role, person_id=person_id, token_version=token_version,
                     auth_time=auth_time)


FRESH_AUTHENTICATION_S = 300


def is_fresh(principal: Principal, max_age_s: int = FRESH_AUTHENTICATION_S) -> bool:
    """Did the person enter their password within `max_age_s` (login or re-authentication)?"""
    return principal.auth_time is not None and 0 <= time.time() - principal.auth_time <= max_age_s


def bearer_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("an 'Authorization: Bearer <token>' header is required")
    return token.strip()


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


async def write_audit_many(conn: asyncpg.Connection, principal: Principal, action: str,
                           person_ids: Sequence[uuid.UUID], *, target: str | None = None) -> None:
    """One audit row per person (a list or an export is a read of each, R10), in one statement."""
    if person_ids:
        await conn.execute(
            "INSERT INTO audit_log (actor, role, action, person_id, target)"
            " SELECT $1, $2, $3, p, $5 FROM unnest($4::uuid[]) AS p",
            principal.user, principal.role.value, action, list(person_ids), target)


Authenticate = Callable[[Request], Principal]
DenialAudit = Callable[[Request, Principal, str, "uuid.UUID | None"], Awaitable[None]]


def role_guard(authenticate: Authenticate) -> Callable[..., Callable[[Request], Awaitable[Principal]]]:
    """Build `require(*roles)`: a FastAPI dependency that admits only the named roles."""

    def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
        allowed = frozenset(roles)

        async def dependency(request: Request) -> Principal:
            principal = authenticate(request)
            if principal.role not in allowed:
                await deny(request, principal, f"{request.method} {request.url.path}")
            return principal

        dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the access-control tests
        return dependency

    return require


async def audit_denial(where: Request | asyncpg.Connection | asyncpg.Pool, principal: Principal | None, action: str,
                       *, person_id: uuid.UUID | None = None, outcome: str = "denied",
                       details: dict[str, Any] | None = None) -> None:
    """Write a denial's audit row where it survives the request's rolled-back transaction.

    Given the request, the row goes through the app's own small audit pool
    (`app.state.audit_denial`), never a second connection of the pool the route may hold, so
    denials cannot deadlock it (issue 16)."""
    if isinstance(where, Request):
        await where.app.state.audit_denial(principal, action, person_id=person_id, outcome=outcome, details=details)
    else:
        await write_audit(where, principal, action, person_id=person_id, outcome=outcome, details=details)


async def deny(where: Request | asyncpg.Connection | asyncpg.Pool, principal: Principal, action: str, *,
               person_id: uuid.UUID | None = None) -> None:
    """Audit-log a denial and raise 403 (SPEC §5: denials are logged). Pass the request."""
    await audit_denial(where, principal, action, person_id=person_id)
    log.warning("access_denied", user=principal.user, role=principal.role.value, action=action,
                person_id=str(person_id) if person_id else None)
    raise Forbidden(f"role {principal.role.value} may not do this")
