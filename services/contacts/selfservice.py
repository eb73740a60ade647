"""Accounts and self-service (R11): login with username and password (argon2id, lockout),
then a person reads and updates only their own data and changes their password.

Tokens name the person only (`person:<id>`), never the username. A passivated person keeps
access to their own data (R6)."""
from __future__ import annotations

import uuid

import asyncpg
from fastapi import APIRouter, Depends, Request

from services.contacts import domain, service, storage
from services.contacts.passwords import Passwords
from services.contacts.schemas import AccountIn, LoginIn, PasswordChangeIn, SelfUpdate
from shared.web.auth import Principal, Role, mint_token, write_audit
from shared.messaging.envelope import utcnow
from shared.errors import Conflict, InvalidInput, Locked, NotAuthenticated, NotFound
from shared.web.http import require, runtime_of
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter()
subject = require(Role.subject)
staff = require(Role.register_owner, Role.register_user)
WRONG_CREDENTIALS = "the username or password is wrong"


def passwords_of(request: Request) -> Passwords:
    return request.app.state.passwords


def subject_principal(person_id: uuid.UUID) -> Principal:
    return Principal(user=f"person:{person_id}", role=Role.subject, person_id=person_id)


@router.post("/persons/{person_id}/account", status_code=201, tags=["accounts"])
async def create_account(person_id: uuid.UUID, body: AccountIn, request: Request,
                         who: Principal = Depends(staff)) -> dict:
    """Staff open a self-service account (the person should change the password at first login)."""
    password_hash = await passwords_of(request).hash(body.password)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await storage.get_person(conn, person_id)
        if person is None:
            raise NotFound("no such person")
        if await storage.account_of(conn, person_id) is not None:
            raise Conflict("the person already has an account")
        try:
            await storage.insert_account(conn, person_id, body.username, body.nickname, body.identifiers, password_hash)
        except asyncpg.UniqueViolationError:
            raise Conflict("the username is taken", fields={"username": "already taken"}) from None
        await storage.record_sources(conn, person_id, ["username", "nickname", "password"], "staff")
        await write_audit(conn, who, "account.create", person_id=person_id)
    return {"person_id": person_id}


@router.post("/auth/login", tags=["self-service"])
async def login(body: LoginIn, request: Request) -> dict:
    """A token for the person, or 401; five failures in a row lock the account (423)."""
    runtime, passwords = runtime_of(request), passwords_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        account = await storage.account_by_username(conn, body.username)
        now = utcnow()
        if account is not None and domain.is_locked(account["locked_until"], now):
            await write_audit(conn, subject_principal(account["person_id"]), "self.login",
                              person_id=account["person_id"], outcome="locked")
            locked = True
        else:
            locked = False
            ok = await passwords.verify(account["password_hash"] if account else None, body.password)
            if account is None:
                await write_audit(conn, None, "self.login", outcome="denied")
            elif not ok:
                failed, until = domain.after_failed_login(account["failed_attempts"], now)
                await storage.set_login_failures(conn, account["person_id"], failed, until)
                await write_audit(conn, subject_principal(account["person_id"]), "self.login",
                                  person_id=account["person_id"], outcome="denied")
                if until is not None:
                    log.warning("account_locked", person_id=str(account["person_id"]))
            else:
                await storage.set_login_failures(conn, account["person_id"], 0, None)
                if passwords.needs_rehash(account["password_hash"]):
                    await storage.set_password_hash(conn, account["person_id"], await passwords.hash(body.password))
                await write_audit(conn, subject_principal(account["person_id"]), "self.login",
                                  person_id=account["person_id"])
    # Raised after the commit, so failed attempts are counted.
    if locked:
        raise Locked("the account is locked after repeated failed logins; try again later")
    if account is None or not ok:
        raise NotAuthenticated(WRONG_CREDENTIALS)
    person_id = account["person_id"]
    token = mint_token(runtime.settings.rekisteri_token_secret, user=f"person:{person_id}", role=Role.subject,
                       person_id=person_id, ttl_s=runtime.settings.rekisteri_token_ttl_s)
    return {"token": token, "token_type": "bearer", "person_id": person_id}


async def own_person(conn: asyncpg.Connection, who: Principal, *, for_update: bool = False) -> dict:
    person = await storage.get_person(conn, who.person_id, for_update=for_update)
    if person is None:
        raise NotFound("no such person")
    return person


@router.get("/me", tags=["self-service"])
async def read_me(request: Request, who: Principal = Depends(subject)) -> dict:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await own_person(conn, who)
        await write_audit(conn, who, "self.read", person_id=who.person_id)
        everything = await storage.person_everything(conn, who.person_id)
    everything.pop("rectifications", None)
    return everything


@router.patch("/me", tags=["self-service"])
async def update_me(body: SelfUpdate, request: Request, who: Principal = Depends(subject)) -> dict:
    changes = body.changes()
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        person = await own_person(conn, who, for_update=True)

        changed = await service.change_person(runtime_of(request).unit_of_work(conn), person, changes,
                                              source="self_service", cause="self_service")
        await write_audit(conn, who, "self.update", person_id=who.person_id, details={"fields": changed})
        return {"person_id": who.person_id, "changed_fields": changed}


@router.post("/me/password", status_code=204, tags=["self-service"])
async def change_password(body: PasswordChangeIn, request: Request, who: Principal = Depends(subject)) -> None:
    passwords = passwords_of(request)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        account = await storage.account_of(conn, who.person_id)
        if account is None:
            raise NotFound("no account")
        ok = await passwords.verify(account["password_hash"], body.current_password)
        if ok:
            await storage.set_password_hash(conn, who.person_id, await passwords.hash(body.new_password))
        else:
            failed, until = domain.after_failed_login(account["failed_attempts"], utcnow())
            await storage.set_login_failures(conn, who.person_id, failed, until)
        await write_audit(conn, who, "self.password_change", person_id=who.person_id,
                          outcome="allowed" if ok else "denied")
    if not ok:
        raise InvalidInput("current_password: does not match", fields={"current_password": "does not match"})
