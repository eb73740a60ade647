"""Accounts and self-service (R11): staff open an account, the person activates it with a
single-use code and sets their own password (SPEC §7), logs in (argon2id, rate limits,
lockout), then reads and updates only their own data and changes their password.

Tokens name the person only (`person:<id>`), never the username, and carry the account's
token version: a password change, a disable or an erasure revokes every earlier token. A
passivated person keeps access to their own data (R6).

Login, activation and re-authentication answer the same and do the same work (one argon2
verify, against a decoy hash when there is nothing real to check) whether the username is
unknown, the password wrong, the account locked or not yet activated (issue 16)."""
from __future__ import annotations

import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request

from services.contacts import domain, service, storage
from services.contacts.domain import State
from services.contacts.settings import contacts_settings
from shared.passwords import Passwords
from services.contacts.schemas import (AccountIn, ActivateIn, LoginIn, PasswordChangeIn, ReauthenticateIn,
                                       SelfUpdate)
from shared.web.auth import Principal, Role, audit_denial, mint_token, write_audit
from shared.web.ratelimit import TokenBuckets
from shared.messaging.envelope import utcnow
from shared.messaging.events import NotificationRequested, SubjectTokensRevoked
from shared.errors import Conflict, InvalidInput, Locked, NotAuthenticated, NotFound
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter()
subject = require(Role.subject)
staff = require(Role.register_owner, Role.register_user)
WRONG_CREDENTIALS = "the username or password is wrong"
WRONG_CODE = "the username or activation code is wrong, used or expired"
# Services a self-service token is for: contacts (/me) and consent (/me/consents).
SUBJECT_AUDIENCE = ("contacts", "consent")


def passwords_of(request: Request) -> Passwords:
    return request.app.state.passwords


class LoginLimits:
    """Token buckets per client IP and per username for every password or code check."""

    def __init__(self, settings: Any) -> None:
        self.per_ip = TokenBuckets(settings.login_burst_per_ip, settings.login_per_minute_per_ip)
        self.per_username = TokenBuckets(settings.login_burst_per_username, settings.login_per_minute_per_username)

    def check(self, request: Request, username: str) -> None:
        ip = request.client.host if request.client else "unknown"
        self.per_ip.check(ip, "attempts from this address")
        self.per_username.check(username.strip().lower(), "attempts for this username")


def limits_of(request: Request) -> LoginLimits:
    limits = getattr(request.app.state, "login_limits", None)
    if limits is None:
        limits = request.app.state.login_limits = LoginLimits(runtime_of(request).settings)
    return limits


def subject_principal(person_id: uuid.UUID) -> Principal:
    return Principal(user=f"person:{person_id}", role=Role.subject, person_id=person_id)


def subject_token(request: Request, person_id: uuid.UUID, token_version: int) -> dict[str, Any]:
    settings = runtime_of(request).settings
    token = mint_token(settings.rekisteri_token_secret, user=f"person:{person_id}", role=Role.subject,
                       person_id=person_id, ttl_s=min(settings.rekisteri_token_ttl_s,
                                                      settings.token_max_lifetime_s(Role.subject.value)),
                       audience=SUBJECT_AUDIENCE, issuer=settings.rekisteri_token_issuer,
                       token_version=token_version, auth_time=int(time.time()))
    return {"token": token, "token_type": "bearer", "person_id": person_id}


async def current_subject(request: Request, who: Principal = Depends(subject)) -> Principal:
    """The subject, if their token has not been revoked since it was issued (a password
    change, a disable or an erasure moves the account's token version on). Operator-minted
    subject tokens carry no version and live until they expire."""
    if who.token_version is None:
        return who
    state = await storage.token_state(runtime_of(request).pool, who.person_id)
    if state is None or state["disabled_at"] is not None or state["token_version"] != who.token_version:
        await audit_denial(request, who, f"{request.method} {request.url.path}", person_id=who.person_id,
                           outcome="unauthenticated", details={"reason": "token revoked"})
        raise NotAuthenticated("the bearer token has been revoked")
    return who


async def announce_revocation(request: Request, conn: asyncpg.Connection, person_id: uuid.UUID, *,
                              disabled: bool = False) -> None:
    """Tell the other services that accept subject tokens (consent) which of them died, in the
    transaction that moved the token version on: they refuse the same tokens contacts does."""
    state = await storage.token_state(conn, person_id)
    await runtime_of(request).unit_of_work(conn).outbox.add(SubjectTokensRevoked(
        person_id=person_id, token_version=state["token_version"], disabled=disabled))


# ---- accounts: staff open, the person activates (SPEC §7) -------------------------------

@router.post("/persons/{person_id}/account", status_code=201, tags=["accounts"],
             response_model=answers.AccountOpened, responses=errors(404, 409))
async def create_account(person_id: uuid.UUID, body: AccountIn, request: Request,
                         who: Principal = Depends(staff)) -> dict:
    """Open a self-service account without a password. The single-use activation code (valid
    72 h, stored only as a slow hash) is shown once to this staff member and sent to the
    person through `notification-requested` for the company's mailer."""
    runtime, passwords = runtime_of(request), passwords_of(request)
    code = secrets.token_urlsafe(18)
    code_hash = await passwords.hash(code)  # slow: before the transaction
    expires_at = utcnow() + timedelta(seconds=contacts_settings(runtime).activation_code_ttl_s)
    async with runtime.pool.acquire() as conn, conn.transaction():
        person = await storage.get_person(conn, person_id)
        if person is None:
            raise NotFound("no such person")
        if not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
            await audit_denial(request, who, "account.create", person_id=person_id)
            raise NotFound("no such person")  # R6: a passivated person is not visible to this role
        if await storage.account_of(conn, person_id) is not None:
            raise Conflict("the person already has an account")
        try:
            await storage.insert_account(conn, person_id, body.username, body.nickname, body.identifiers,
                                         code_hash, expires_at)
        except asyncpg.UniqueViolationError:
            raise Conflict("the username is taken", fields={"username": "already taken"}) from None
        await storage.record_sources(conn, person_id, ["username", "nickname"], "staff")
        await runtime_of(request).unit_of_work(conn).outbox.add(NotificationRequested(
            person_id=person_id, template="account-activation", code=code, expires_at=expires_at))
        await write_audit(conn, who, "account.create", person_id=person_id)
    return {"person_id": person_id, "username": body.username, "activation_code": code,
            "activation_expires_at": expires_at}


@router.post("/persons/{person_id}/account/disable", tags=["accounts"],
             response_model=answers.AccountDisabled, responses=errors(404))
async def disable_account(person_id: uuid.UUID, request: Request, who: Principal = Depends(staff)) -> dict:
    """Close self-service access: every token of the account dies at once."""
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await storage.get_person(conn, person_id)
        if person is None or not domain.staff_may_read(who.role, State(person["lifecycle_state"])):
            if person is not None:
                await audit_denial(request, who, "account.disable", person_id=person_id)
            raise NotFound("no such person")
        if await storage.account_of(conn, person_id, for_update=True) is None:
            raise NotFound("the person has no account")
        changed = await storage.disable_account(conn, person_id)
        if changed:
            await announce_revocation(request, conn, person_id, disabled=True)
        await write_audit(conn, who, "account.disable", person_id=person_id)
    return {"person_id": person_id, "disabled": True, "changed": changed}


@router.post("/auth/activate", tags=["self-service"],
             response_model=answers.Activated, responses=errors(401, 429))
async def activate_account(body: ActivateIn, request: Request) -> dict:
    """The person sets their own password with the activation code (single use, 72 h)."""
    limits_of(request).check(request, body.username)
    runtime, passwords = runtime_of(request), passwords_of(request)
    account = await storage.account_by_username(runtime.pool, body.username)
    now = utcnow()
    usable = (account is not None and account["activation_code_hash"] is not None
              and account["disabled_at"] is None and account["activation_expires_at"] > now)
    ok = await passwords.verify(account["activation_code_hash"] if usable else None, body.code) and usable
    new_hash = await passwords.hash(body.new_password) if ok else None
    async with runtime.pool.acquire() as conn, conn.transaction():
        if ok:
            fresh = await storage.account_of(conn, account["person_id"], for_update=True)
            ok = fresh is not None and fresh["activation_code_hash"] == account["activation_code_hash"]
        if ok:
            await storage.set_password_hash(conn, account["person_id"], new_hash)
            await announce_revocation(request, conn, account["person_id"])
        actor = subject_principal(account["person_id"]) if account else None
        await write_audit(conn, actor, "self.activate", person_id=account["person_id"] if account else None,
                          outcome="allowed" if ok else "denied")
    if not ok:
        raise NotAuthenticated(WRONG_CODE)
    return {"person_id": account["person_id"], "activated": True}


# ---- login and password checks (R11) ----------------------------------------------------

async def check_password(request: Request, account: dict | None, password: str, action: str) -> bool:
    """One argon2 verify whatever the case, outside any transaction and row lock; then a
    short transaction records the outcome (failures counted, lockout, audit)."""
    passwords, pool = passwords_of(request), runtime_of(request).pool
    now = utcnow()
    usable = account is not None and account["password_hash"] is not None and account["disabled_at"] is None
    locked = account is not None and domain.is_locked(account["locked_until"], now)
    ok = await passwords.verify(account["password_hash"] if usable else None, password) and usable and not locked
    rehashed = await passwords.hash(password) if ok and passwords.needs_rehash(account["password_hash"]) else None
    async with pool.acquire() as conn, conn.transaction():
        if account is None:
            await write_audit(conn, None, action, outcome="denied")
            return False
        person_id = account["person_id"]
        current = await storage.account_of(conn, person_id, for_update=True)
        if current is None:
            ok = False
        elif ok:
            if current["failed_attempts"] or current["locked_until"]:
                await storage.set_login_failures(conn, person_id, 0, None)
            if rehashed:
                await storage.set_password_hash(conn, person_id, rehashed, revoke_tokens=False)
        elif not domain.is_locked(current["locked_until"], now):  # attempts during a delay do not count
            failed, until = domain.after_failed_login(current["failed_attempts"], now)
            await storage.set_login_failures(conn, person_id, failed, until)
            if until is not None:
                log.warning("account_locked", person_id=str(person_id), failed_attempts=failed)
        outcome = "allowed" if ok else ("locked" if locked else "denied")
        await write_audit(conn, subject_principal(person_id), action, person_id=person_id, outcome=outcome)
    return ok


@router.post("/auth/login", tags=["self-service"],
             response_model=answers.Token, responses=errors(401, 429))
async def log_in(body: LoginIn, request: Request) -> dict:
    """A token for the person, or 401 — the same 401 for an unknown username, a wrong
    password, a locked or a not yet activated account; 429 past the rate limits."""
    limits_of(request).check(request, body.username)
    account = await storage.account_by_username(runtime_of(request).pool, body.username)
    if not await check_password(request, account, body.password, "self.login"):
        raise NotAuthenticated(WRONG_CREDENTIALS)
    state = await storage.token_state(runtime_of(request).pool, account["person_id"])
    return subject_token(request, account["person_id"], state["token_version"])


@router.post("/auth/reauthenticate", tags=["self-service"],
             response_model=answers.Token, responses=errors(429))
async def reauthenticate_subject(body: ReauthenticateIn, request: Request, who: Principal = Depends(current_subject)) -> dict:
    """Password re-entry: a fresh token, accepted for the next 5 minutes where fresh
    authentication is needed (lifting a marketing ban at consent)."""
    limits_of(request).check(request, who.user)
    account = await storage.account_of(runtime_of(request).pool, who.person_id)
    if not await check_password(request, account, body.password, "self.reauthenticate"):
        raise NotAuthenticated(WRONG_CREDENTIALS)
    state = await storage.token_state(runtime_of(request).pool, who.person_id)
    return subject_token(request, who.person_id, state["token_version"])


async def own_person(conn: asyncpg.Connection, who: Principal, *, for_update: bool = False) -> dict:
    person = await storage.get_person(conn, who.person_id, for_update=for_update)
    if person is None:
        raise NotFound("no such person")
    return person


@router.get("/me", tags=["self-service"],
            response_model=answers.PersonRecord, responses=errors(404))
async def read_me(request: Request, who: Principal = Depends(current_subject)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await own_person(conn, who)
        await write_audit(conn, who, "self.read", person_id=who.person_id)
        everything = await storage.person_everything(conn, who.person_id)
    everything.pop("rectifications", None)
    return everything


@router.patch("/me", tags=["self-service"],
              response_model=answers.Changed, responses=errors(404))
async def update_me(body: SelfUpdate, request: Request, who: Principal = Depends(current_subject)) -> dict:
    changes = body.changes()
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await own_person(conn, who, for_update=True)

        changed = await service.change_person(runtime_of(request).unit_of_work(conn), person, changes,
                                              source="self_service", cause="self_service")
        await write_audit(conn, who, "self.update", person_id=who.person_id, details={"fields": changed})
        return {"person_id": who.person_id, "changed_fields": changed}


@router.post("/me/password", status_code=204, tags=["self-service"],
             responses=errors(404, 429))
async def change_password(body: PasswordChangeIn, request: Request, who: Principal = Depends(current_subject)) -> None:
    """A new password; every earlier token (this one included) is revoked. A locked account
    waits out its delay here too (423)."""
    limits_of(request).check(request, who.user)
    runtime = runtime_of(request)
    account = await storage.account_of(runtime.pool, who.person_id)
    if account is None:
        raise NotFound("no account")
    locked = domain.is_locked(account["locked_until"], utcnow())
    ok = await check_password(request, account, body.current_password, "self.password_check")
    if locked:
        raise Locked("the account waits after repeated failed password checks; try again later")
    if not ok:
        raise InvalidInput("current_password: does not match", fields={"current_password": "does not match"})
    new_hash = await passwords_of(request).hash(body.new_password)
    async with runtime.pool.acquire() as conn, conn.transaction():
        await storage.set_password_hash(conn, who.person_id, new_hash)
        await announce_revocation(request, conn, who.person_id)
        await write_audit(conn, who, "self.password_change", person_id=who.person_id)
