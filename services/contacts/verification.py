"""Verifying the identity of a request received by email or phone (SPEC §10): the register
owner enters the one-time code the person got on their own contact points and gave back.
Verified, the paused clock runs again (the due date moves by the days of the pause), the method
is recorded, and an access request goes on (held for a decision if chargeable, else the
services are asked). A wrong code spends one of five tries; the try stays spent."""
from __future__ import annotations

from pydantic import ConfigDict
from shared.web.openapi import with_example

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import StringConstraints

from services.contacts import access, identity_codes, request_storage, requests, storage
from services.contacts.identity_codes import Outcome
from services.contacts.schemas import Body
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messaging.envelope import utcnow
from shared.privacy.keystore import KeyStore
from shared.web.auth import Principal, Role, write_audit
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of

router = APIRouter(tags=["request deadlines"])
owner = require(Role.register_owner)


class CodeIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"code": "483920"}))

    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


REFUSALS = {
    Outcome.wrong: "wrong code",
    Outcome.expired: "the code has expired (10 minutes): send a new one",
    Outcome.exhausted: "no tries left (5): send a new code",
}


async def _awaiting(conn, request_id: uuid.UUID) -> dict:
    row = await request_storage.get_request(conn, request_id, for_update=True)
    if row is None:
        raise NotFound("no such request")
    if row["status"] != "awaiting_identity":
        raise Conflict("the identity is already verified", fields={"status": row["status"]})
    return row


@router.post("/requests/{request_id}/identity-code", status_code=201,
             response_model=answers.CodeSent, responses=errors(404, 409))
async def resend_code(request_id: uuid.UUID, request: Request, who: Principal = Depends(owner)) -> dict:
    """A fresh code (ten minutes, five tries) replacing the outstanding one."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await _awaiting(conn, request_id)
        if row["person_id"] is None:
            raise Conflict("the request names nobody a code could go to", fields={"person_id": "none"})
        expires_at = await requests.send_code(runtime.unit_of_work(conn), conn, request_id, row["person_id"],
                                              row["channel"], who)
    return {"id": request_id, "expires_at": expires_at, "tries": identity_codes.TRIES}


@router.post("/requests/{request_id}/verify",
             response_model=answers.Verified, responses=errors(404, 409, 429))
async def verify_identity(request_id: uuid.UUID, body: CodeIn, request: Request, who: Principal = Depends(owner)) -> dict:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        async with conn.transaction():
            row = await _awaiting(conn, request_id)
            code = await request_storage.outstanding_code(conn, request_id)
            if code is None:
                raise InvalidInput("no code was sent", fields={"code": "no code outstanding: send one"})
            now = utcnow()
            outcome = identity_codes.check(body.code, salt=code["salt"], stored=code["code_hash"],
                                           expires_at=code["expires_at"], tries_left=code["tries_left"], now=now)
            if outcome is not Outcome.verified:  # the spent try commits; the refusal follows
                left = await request_storage.spend_try(conn, request_id)
                await write_audit(conn, who, "request.identity_refused", person_id=row["person_id"],
                                  target=f"request:{request_id}", outcome="denied", details={"reason": outcome.value})
            else:
                method = f"{row['channel']}_code"
                await request_storage.drop_code(conn, request_id)
                await request_storage.record_verification(conn, request_id, method, now)
                if row["kind"] == "access":
                    await _release_access(conn, request_id, runtime.keys)
                await write_audit(conn, who, "request.identity_verified", person_id=row["person_id"],
                                  target=f"request:{request_id}", details={"method": method})
                return requests.public(await request_storage.get_request(conn, request_id))
    raise InvalidInput(f"code: {REFUSALS[outcome]}", fields={"code": f"{REFUSALS[outcome]}; {left} tries left"})


async def _release_access(conn, request_id: uuid.UUID, keys: KeyStore | None) -> None:
    req = await storage.get_access_request(conn, request_id, for_update=True)
    status = "awaiting_decision" if req["chargeable"] else "collecting"
    await request_storage.release_access_request(conn, request_id, status)
    if status == "collecting":
        await access.ask_services(conn, await storage.get_access_request(conn, request_id), keys)
