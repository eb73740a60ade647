"""Processors the register owner manages (GDPR Art. 28 and 30(1)(d), notice §4): name, y-tunnus
(check digit verified), the service, the purposes (R1), where the data is processed and the
date of the processing agreement. They are listed in the record of processing and in every
access report. Changes are audit-logged (R10)."""
from __future__ import annotations

from pydantic import ConfigDict
from shared.web.openapi import with_example

import uuid
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import StringConstraints, field_validator

from services.contacts.domain import normalise_business_id
from services.contacts.schemas import Body
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messaging.envelope import utcnow
from shared.messaging.events import ProcessingPurpose
from shared.web.auth import Principal, Role, write_audit
from services.contacts import answers
from shared.web.openapi import errors
from shared.web.http import require, runtime_of
from shared.web.paging import PageRequest, page, page_query

router = APIRouter(tags=["processors"])
owner = require(Role.register_owner)
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# EU and EEA countries: processing elsewhere is a transfer to a third country (Art. 44).
EEA = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split())
COLUMNS = "id, name, business_id, service, purposes, location, agreement_date, created_at, updated_at"


class ProcessorIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"name": "Pilvipalvelu Oy", "business_id": "7654321-4",
        "service": "hosting", "purposes": ["customer_relationship"], "location": "FI", "agreement_date": "2024-11-01"}))

    name: Text
    business_id: Text
    service: Text
    purposes: list[ProcessingPurpose]
    location: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=2)]
    agreement_date: date

    @field_validator("business_id")
    @classmethod
    def _business_id(cls, value: str) -> str:
        return normalise_business_id(value)  # ValueError names the rule: a 422 on business_id

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if not value.isascii() or not value.isalpha():
            raise ValueError("an ISO 3166-1 alpha-2 country code, such as FI")
        return value.upper()

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: list[ProcessingPurpose]) -> list[ProcessingPurpose]:
        if not value:
            raise ValueError("name at least one purpose (P1-P3)")
        return list(dict.fromkeys(value))


def public(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["outside_eea"] = out["location"] not in EEA
    return out


async def all_processors(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    """Every processor, for the documents that must name them all (the processing record, an access report)."""
    return [public(r) for r in await conn.fetch(f"SELECT {COLUMNS} FROM processors ORDER BY name, id")]


async def processors_page(conn: asyncpg.Connection | asyncpg.Pool, limit: int,
                          after: tuple[datetime, uuid.UUID] | None) -> list[dict[str, Any]]:
    """Processors in the order they were registered, keyset paged by (created_at, id)."""
    return [public(r) for r in await conn.fetch(
        f"SELECT {COLUMNS} FROM processors WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))"
        " ORDER BY created_at, id LIMIT $3", *(after or (None, None)), limit)]


def _check_date(body: ProcessorIn) -> None:
    if body.agreement_date > utcnow().date():
        raise InvalidInput("agreement_date: in the future", fields={"agreement_date": "an agreement already made"})


@router.get("/processors",
            response_model=answers.Processors)
async def list_processors(request: Request, paging: PageRequest = Depends(page_query(100, 500)),
                          _who: Principal = Depends(owner)) -> dict:
    """Processors in the order they were registered, a page at a time (issue 20)."""
    rows, after = page(await processors_page(runtime_of(request).pool, paging.limit + 1,
                                             paging.after(datetime, uuid.UUID)),
                       paging.limit, lambda r: (r["created_at"], r["id"]))
    return {"processors": rows, "next": after}


@router.post("/processors", status_code=201,
             response_model=answers.Processor, responses=errors(409))
async def create_processor(body: ProcessorIn, request: Request, who: Principal = Depends(owner)) -> dict:
    _check_date(body)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "INSERT INTO processors (id, name, business_id, service, purposes, location, agreement_date, created_by)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}", uuid.uuid4(), body.name,
                body.business_id, body.service, [p.value for p in body.purposes], body.location, body.agreement_date,
                who.user)
        except asyncpg.UniqueViolationError:
            raise Conflict("a processor with this business id exists",
                           fields={"business_id": "already registered"}) from None
        await write_audit(conn, who, "processor.create", target=f"processor:{row['id']}")
    return public(row)


@router.put("/processors/{processor_id}",
            response_model=answers.Processor, responses=errors(404))
async def replace_processor(processor_id: uuid.UUID, body: ProcessorIn, request: Request,
                            who: Principal = Depends(owner)) -> dict:
    _check_date(body)
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "UPDATE processors SET name = $2, business_id = $3, service = $4, purposes = $5, location = $6,"
                f" agreement_date = $7, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}", processor_id,
                body.name, body.business_id, body.service, [p.value for p in body.purposes], body.location,
                body.agreement_date)
        except asyncpg.UniqueViolationError:
            raise Conflict("a processor with this business id exists",
                           fields={"business_id": "already registered"}) from None
        if row is None:
            raise NotFound("no such processor")
        await write_audit(conn, who, "processor.update", target=f"processor:{processor_id}")
    return public(row)


@router.delete("/processors/{processor_id}", status_code=204,
               responses=errors(404))
async def remove_processor(processor_id: uuid.UUID, request: Request, who: Principal = Depends(owner)) -> None:
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        if await conn.execute("DELETE FROM processors WHERE id = $1", processor_id) != "DELETE 1":
            raise NotFound("no such processor")
        await write_audit(conn, who, "processor.remove", target=f"processor:{processor_id}")
