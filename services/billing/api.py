"""HTTP routes of the billing service (role `billing`, SPEC §5/§6): meters, price plans,
closing periods, invoices and credit notes, usage reports as JSON and CSV (P3)."""
from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.billing import domain, storage
from services.billing.handlers import Billing, validate_period
from shared.web.auth import Principal, Role, write_audit
from shared.errors import InvalidInput, NotFound
from shared.web.http import require, runtime_of

router = APIRouter(prefix="/billing", tags=["billing"])
BILLING = require(Role.billing)
READERS = require(Role.billing, Role.register_owner)
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"


def billing_of(request: Request) -> Billing:
    return request.app.state.billing


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterBody(Body):
    aggregation: domain.Aggregation
    dimensions: list[str] = Field(default_factory=list, max_length=10)
    unique_dimension: str | None = Field(default=None, min_length=1, max_length=100)
    unit: str = Field(default="unit", min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique_needs_dimension(self) -> "MeterBody":
        if (self.aggregation is domain.Aggregation.unique_count) != (self.unique_dimension is not None):
            raise ValueError("unique_dimension is required for unique_count meters and only for them")
        return self


class CreditNoteBody(Body):
    reason: str = Field(min_length=1, max_length=500)
    net: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=2)


def _invoice_json(row: Any) -> dict[str, Any]:
    return {"invoice_id": str(row["invoice_id"]), "customer_id": str(row["customer_id"]), "period": row["period"],
            "kind": row["kind"], "credits": str(row["credits"]) if row["credits"] else None, "reason": row["reason"],
            "net": str(row["net"]), "vat_rate": str(row["vat_rate"]), "vat": str(row["vat"]),
            "gross": str(row["gross"]), "currency": row["currency"], "lines": row["lines"],
            "issued_at": row["issued_at"].isoformat()}


@router.put("/meters/{name}", summary="Define or change a meter")
async def put_meter(name: str, body: MeterBody, request: Request, principal: Principal = Depends(BILLING)
                    ) -> dict[str, Any]:
    if not 1 <= len(name) <= 100:
        raise InvalidInput("name: 1 to 100 characters", fields={"name": "1 to 100 characters"})
    meter = domain.Meter(name, body.aggregation, tuple(body.dimensions), body.unique_dimension, body.unit)
    runtime = runtime_of(request)
    await storage.save_meter(runtime.pool, meter)
    await billing_of(request).catalog.reload(runtime.pool)
    await write_audit(runtime.pool, principal, "meter.put", target=name)
    return {"name": name, **body.model_dump(mode="json")}


@router.get("/meters", summary="Meters")
async def get_meters(request: Request, _: Principal = Depends(READERS)) -> list[dict[str, Any]]:
    meters = await storage.load_meters(runtime_of(request).pool)
    return [{"name": m.name, "aggregation": m.aggregation.value, "dimensions": list(m.dimensions),
             "unique_dimension": m.unique_dimension, "unit": m.unit} for m in meters.values()]


@router.put("/customers/{customer_id}/plan", summary="Set a customer's price plan (a new version)")
async def put_plan(customer_id: uuid.UUID, plan: domain.PricePlan, request: Request,
                   effective_from: datetime | None = Query(
                       default=None, description="When the version takes effect (ISO 8601 with offset); default:"
                       " the start for a customer's first version, now for a change"),
                   principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    runtime = runtime_of(request)
    if effective_from is not None and effective_from.tzinfo is None:
        raise InvalidInput("effective_from: needs a UTC offset", fields={"effective_from": "needs a UTC offset"})
    meters = await storage.load_meters(runtime.pool)
    unknown = {f"components.{i}.meter": "unknown meter" for i, c in enumerate(plan.components) if c.meter not in meters}
    if unknown:
        raise InvalidInput("components: unknown meter", fields=unknown)
    result = await billing_of(request).put_plan_version(customer_id, plan, effective_from)
    await write_audit(runtime.pool, principal, "plan.put", target=str(customer_id))
    return result


@router.get("/customers/{customer_id}/plan", summary="A customer's price plan in force now")
async def get_plan(customer_id: uuid.UUID, request: Request, _: Principal = Depends(READERS)) -> dict[str, Any]:
    plan = await storage.load_plan(runtime_of(request).pool, customer_id)
    if plan is None:
        raise NotFound("price plan not found")
    return {"customer_id": str(customer_id), "plan": plan.model_dump(mode="json")}


@router.get("/customers/{customer_id}/plan/versions", summary="A customer's plan versions, oldest first")
async def get_plan_versions(customer_id: uuid.UUID, request: Request,
                            _: Principal = Depends(READERS)) -> dict[str, Any]:
    versions = await storage.plan_versions(runtime_of(request).pool, customer_id)
    if not versions:
        raise NotFound("price plan not found")
    return {"customer_id": str(customer_id), "versions": [
        {"effective_from": v.effective_from.isoformat(),
         "effective_until": versions[i + 1].effective_from.isoformat() if i + 1 < len(versions) else None,
         "plan": v.plan.model_dump(mode="json")} for i, v in enumerate(versions)]}


@router.post("/periods/{period}/close", summary="Close a period: one invoice per customer (idempotent)")
async def close_period(period: str, request: Request, principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    result = await billing_of(request).close_period(validate_period(period))
    await write_audit(runtime_of(request).pool, principal, "period.close", target=period)
    return result


@router.get("/invoices", summary="Invoices and credit notes")
async def list_invoices(request: Request, customer_id: uuid.UUID | None = None,
                        period: str | None = Query(default=None, pattern=PERIOD),
                        _: Principal = Depends(READERS)) -> list[dict[str, Any]]:
    return [_invoice_json(r) for r in await storage.list_invoices(runtime_of(request).pool, customer_id, period)]


@router.get("/invoices/{invoice_id}", summary="One invoice or credit note")
async def get_invoice(invoice_id: uuid.UUID, request: Request, _: Principal = Depends(READERS)) -> dict[str, Any]:
    row = await storage.get_invoice(runtime_of(request).pool, invoice_id)
    if row is None:
        raise NotFound("invoice not found")
    return _invoice_json(row)


@router.post("/invoices/{invoice_id}/credit-notes", status_code=201, summary="Correct an invoice with a credit note")
async def credit_note(invoice_id: uuid.UUID, body: CreditNoteBody, request: Request,
                      principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    note = await billing_of(request).issue_credit_note(invoice_id, body.reason, body.net)
    await write_audit(runtime_of(request).pool, principal, "invoice.credit", target=str(invoice_id))
    return {k: (str(v) if isinstance(v, (uuid.UUID, Decimal)) else v) for k, v in note.items()
            if k != "issued_at"} | {"issued_at": note["issued_at"].isoformat()}


def usage_report(meters: dict[str, domain.Meter], rows: list[Any],
                 uniques: list[Any]) -> list[dict[str, Any]]:
    """Usage per meter and dimension combination, late usage included."""
    grouped: dict[tuple[str, str], list[Any]] = defaultdict(list)
    values: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        grouped[(r["meter"], r["dimensions"])].append(r)
    for u in uniques:
        values[(u["meter"], u["dimensions"])].append(u["value"])
    report = []
    for (name, dims), group in sorted(grouped.items()):
        meter = meters[name]
        report.append({"meter": name, "aggregation": meter.aggregation.value, "unit": meter.unit,
                       "dimensions": json.loads(dims),
                       "quantity": domain.quantity_text(
                           domain.meter_quantity(meter.aggregation, group, values[(name, dims)])),
                       "events": sum(int(r["event_count"]) for r in group)})
    return report


@router.get("/customers/{customer_id}/usage", summary="Usage report for a customer and period (JSON or CSV)")
async def get_usage(customer_id: uuid.UUID, request: Request, period: str = Query(pattern=PERIOD),
                    format: Literal["json", "csv"] = "json", principal: Principal = Depends(READERS)) -> Any:
    pool = runtime_of(request).pool
    rows, uniques = await storage.usage_report_rows(pool, customer_id, period)
    report = usage_report(await storage.load_meters(pool), rows, uniques)
    if format == "json":
        return {"customer_id": str(customer_id), "period": period, "usage": report}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer_id", "period", "meter", "dimensions", "aggregation", "unit", "quantity", "events"])
    for line in report:
        dims = ";".join(f"{k}={v}" for k, v in sorted(line["dimensions"].items()))
        writer.writerow([customer_id, period, *(domain.csv_cell(v) for v in (line["meter"], dims)),
                         line["aggregation"], line["unit"], line["quantity"], line["events"]])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="usage-{customer_id}-{period}.csv"'})
