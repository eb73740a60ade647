"""HTTP routes of the billing service (role `billing`, SPEC §5/§6): meters, price plans,
closing periods, invoices and credit notes, usage reports as JSON and CSV (P3)."""
from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Body as Payload, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.billing import domain, payments, pdf, storage
from services.billing.schemas import (CUSTOMER_EXAMPLE, PLAN_EXAMPLE, CloseOut, CustomerOut, InvoiceOut, InvoicePage,
                                      InvoiceWithPayment, MeterOut, Meters, PlanOut, PlanVersionOut, PlanVersionsOut,
                                      ReceivablesOut, UsageOut)
from services.billing.handlers import Billing, validate_period
from services.billing.parties import BillingCustomer, customer_problems
from shared.web.auth import Principal, Role, write_audit
from shared.errors import Conflict, InvalidInput, NotFound
from shared.web.http import require, runtime_of
from shared.web.openapi import errors, media, with_example
from shared.web.paging import PageRequest, page, page_query

router = APIRouter(prefix="/billing", tags=["billing"])
BILLING = require(Role.billing)
READERS = require(Role.billing, Role.register_owner)
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
PAGE = Depends(page_query(100, 1000))


def billing_of(request: Request) -> Billing:
    return request.app.state.billing


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"aggregation": "sum", "dimensions": ["endpoint"], "unique_dimension": None, "unit": "call"}))

    aggregation: domain.Aggregation
    dimensions: list[str] = Field(default_factory=list, max_length=10)
    unique_dimension: str | None = Field(default=None, min_length=1, max_length=100)
    unit: str = Field(default="unit", min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique_needs_dimension(self) -> MeterBody:
        if (self.aggregation is domain.Aggregation.unique_count) != (self.unique_dimension is not None):
            raise ValueError("unique_dimension is required for unique_count meters and only for them")
        return self


class CreditNoteBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example(
        {"reason": "duplicate usage on 14 February", "net": "10.00"}))

    reason: str = Field(min_length=1, max_length=500)
    net: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=2)


def _invoice_json(row: Any) -> dict[str, Any]:
    return {"invoice_id": str(row["invoice_id"]), "customer_id": str(row["customer_id"]), "period": row["period"],
            "kind": row["kind"], "credits": str(row["credits"]) if row["credits"] else None, "reason": row["reason"],
            "net": str(row["net"]), "vat_rate": str(row["vat_rate"]), "vat": str(row["vat"]),
            "gross": str(row["gross"]), "currency": row["currency"], "lines": row["lines"],
            "issued_at": row["issued_at"].isoformat(), "invoice_number": row["invoice_number"],
            "reference": row["reference"], "rf_reference": row["rf_reference"],
            "due_date": row["due_date"].isoformat() if row["due_date"] else None,
            "buyer": (row["parties"] or {}).get("buyer")}


@router.put("/meters/{name}", summary="Define or change a meter", response_model=MeterOut)
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


@router.get("/meters", summary="Meters by name, a page at a time", response_model=Meters)
async def get_meters(request: Request, paging: PageRequest = PAGE, _: Principal = Depends(READERS)) -> dict[str, Any]:
    """Issue 20: a page of meters by name; `next` is null on the last page."""
    after = paging.after(str)
    meters, next_cursor = page(await storage.meters_page(runtime_of(request).pool, paging.limit + 1,
                                                         after[0] if after else None),
                               paging.limit, lambda m: (m.name,))
    return {"next": next_cursor, "meters": [
        {"name": m.name, "aggregation": m.aggregation.value, "dimensions": list(m.dimensions),
         "unique_dimension": m.unique_dimension, "unit": m.unit} for m in meters]}


@router.put("/customers/{customer_id}/plan", summary="Set a customer's price plan (a new version)",
            response_model=PlanVersionOut, responses=errors(409))
async def put_plan(customer_id: uuid.UUID, request: Request,
                   plan: domain.PricePlan = Payload(openapi_examples={"plan": {"value": PLAN_EXAMPLE}}),
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


@router.get("/customers/{customer_id}/plan", summary="A customer's price plan in force now", response_model=PlanOut,
            responses=errors(404))
async def get_plan(customer_id: uuid.UUID, request: Request, _: Principal = Depends(READERS)) -> dict[str, Any]:
    plan = await storage.load_plan(runtime_of(request).pool, customer_id)
    if plan is None:
        raise NotFound("price plan not found")
    return {"customer_id": str(customer_id), "plan": plan.model_dump(mode="json")}


@router.get("/customers/{customer_id}/plan/versions", summary="A customer's plan versions, oldest first, a page at a time",
            response_model=PlanVersionsOut, responses=errors(404))
async def get_plan_versions(customer_id: uuid.UUID, request: Request, paging: PageRequest = PAGE,
                            _: Principal = Depends(READERS)) -> dict[str, Any]:
    """Issue 20: paged by `effective_from`; a version ends where the next one (on this page or
    the next) begins."""
    after = paging.after(datetime)
    versions = await storage.plan_versions_page(runtime_of(request).pool, customer_id, paging.limit + 1,
                                                after[0] if after else None)
    if not versions and after is None:
        raise NotFound("price plan not found")
    shown, next_cursor = page(versions, paging.limit, lambda v: (v.effective_from,))
    return {"customer_id": str(customer_id), "next": next_cursor, "versions": [
        {"effective_from": v.effective_from.isoformat(),
         "effective_until": versions[i + 1].effective_from.isoformat() if i + 1 < len(versions) else None,
         "plan": v.plan.model_dump(mode="json")} for i, v in enumerate(shown)]}


@router.post("/periods/{period}/close", summary="Close a period: one invoice per customer (idempotent)",
             response_model=CloseOut, responses=errors(409))
async def close_period(period: str, request: Request, principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    result = await billing_of(request).close_period(validate_period(period))
    await write_audit(runtime_of(request).pool, principal, "period.close", target=period)
    return result


@router.get("/invoices", summary="Invoices and credit notes in issue order, a page at a time", response_model=InvoicePage)
async def list_invoices(request: Request, customer_id: uuid.UUID | None = None,
                        period: str | None = Query(default=None, pattern=PERIOD), paging: PageRequest = PAGE,
                        _: Principal = Depends(READERS)) -> dict[str, Any]:
    """Issues 16, 20: paged by (issued_at, invoice_id); `next` is null on the last page."""
    rows = await storage.page_invoices(runtime_of(request).pool, customer_id, period,
                                       paging.after(datetime, uuid.UUID), paging.limit)
    rows, next_cursor = page(rows, paging.limit, lambda r: (r["issued_at"], r["invoice_id"]))
    return {"invoices": [_invoice_json(r) for r in rows], "has_more": next_cursor is not None, "next": next_cursor}


MEDIA = {"finvoice": "application/xml", "ubl": "application/xml", "pdf": "application/pdf"}


@router.get("/invoices/{invoice_id}", summary="One invoice or credit note: JSON, Finvoice 3.0, Peppol UBL or PDF",
            response_model=InvoiceWithPayment, responses=errors(404, 409)
            | {200: media({"application/xml": "<Finvoice Version=\"3.0\">...</Finvoice>", "application/pdf": None})})
async def get_invoice(invoice_id: uuid.UUID, request: Request,
                      format: Literal["json", "finvoice", "ubl", "pdf"] = "json",
                      lang: Literal["fi", "en"] | None = None, _: Principal = Depends(READERS)) -> Any:
    """Not paged: one invoice is a document, its lines given whole (issue 20)."""
    pool = runtime_of(request).pool
    row = await storage.get_invoice(pool, invoice_id)
    if row is None:
        raise NotFound("invoice not found")
    if format == "json":
        settled = await payments.invoice_settlement(pool, invoice_id, helsinki_today()) if row["kind"] == "invoice" \
            else None
        return _invoice_json(row) | {"payment": settled and {k: settled[k] for k in (
            "paid", "credited", "open", "status", "days_overdue")}}
    if not (row["parties"] or {}).get("buyer"):
        raise Conflict("format: the invoice was issued without billing customer details, so only as JSON",
                       fields={"format": "no buyer details recorded at issue"})
    if format == "pdf":
        credits = await storage.get_invoice(pool, row["credits"]) if row["credits"] else None
        content: bytes | str = pdf.render(dict(row), lang or row["parties"]["buyer"].get("language", "fi"),
                                          credits["invoice_number"] if credits else None)
    else:
        content = await storage.invoice_document(pool, invoice_id, format) or ""
    filename = f"invoice-{row['invoice_number']}.{'pdf' if format == 'pdf' else 'xml'}"
    return Response(content, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def helsinki_today() -> date:
    return datetime.now(domain.HELSINKI).date()


@router.get("/receivables", summary="Invoices with an open (or overpaid) amount and how long past due",
            response_model=ReceivablesOut)
async def get_receivables(request: Request, customer_id: uuid.UUID | None = None,
                          paging: PageRequest = Depends(page_query(1000, 10_000)),
                          _: Principal = Depends(READERS)) -> dict[str, Any]:
    """Oldest due first (none due last), a page at a time by (due date, issue time, invoice id)
    (issue 20); `open_total` is of every receivable, not only this page's."""
    today = helsinki_today()
    pool = runtime_of(request).pool
    rows = await payments.receivables(pool, customer_id, paging.limit + 1,
                                      paging.after(date, datetime, uuid.UUID))
    rows, next_cursor = page(rows, paging.limit, payments.receivable_key)
    return {"as_of": today.isoformat(), "receivables": [payments.settlement(r, today) for r in rows],
            "open_total": str(await payments.open_total(pool, customer_id)), "next": next_cursor}


@router.put("/customers/{customer_id}", summary="Set a billing customer's details (the buyer on invoices)",
            response_model=CustomerOut)
async def put_customer(customer_id: uuid.UUID, request: Request,
                       body: BillingCustomer = Payload(openapi_examples={"customer": {"value": CUSTOMER_EXAMPLE}}),
                       principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    if problems := customer_problems(body):
        raise InvalidInput("billing customer: " + ", ".join(f"{k}: {v}" for k, v in sorted(problems.items())),
                           fields=problems)
    runtime = runtime_of(request)
    details = body.model_dump(mode="json")
    await storage.save_customer(runtime.pool, customer_id, details, body.contact_person_id)
    await write_audit(runtime.pool, principal, "customer.put", target=str(customer_id))
    return {"customer_id": str(customer_id), **details}


@router.get("/customers/{customer_id}", summary="A billing customer's details", response_model=CustomerOut,
            responses=errors(404))
async def get_customer(customer_id: uuid.UUID, request: Request, _: Principal = Depends(READERS)) -> dict[str, Any]:
    details = await storage.load_customer(runtime_of(request).pool, customer_id)
    if details is None:
        raise NotFound("billing customer not found")
    return {"customer_id": str(customer_id), **details}


@router.post("/invoices/{invoice_id}/credit-notes", status_code=201, summary="Correct an invoice with a credit note",
             response_model=InvoiceOut, responses=errors(404, 409))
async def credit_note(invoice_id: uuid.UUID, body: CreditNoteBody, request: Request,
                      principal: Principal = Depends(BILLING)) -> dict[str, Any]:
    note = await billing_of(request).issue_credit_note(invoice_id, body.reason, body.net)
    await write_audit(runtime_of(request).pool, principal, "invoice.credit", target=str(invoice_id))
    return _invoice_json(await storage.get_invoice(runtime_of(request).pool, note["invoice_id"]))


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


@router.get("/customers/{customer_id}/usage", summary="Usage report for a customer and period (JSON or CSV)",
            response_model=UsageOut, responses={200: media({"text/csv": "customer_id,period,meter,dimensions,aggregation,unit,quantity,events\n"})})
async def get_usage(customer_id: uuid.UUID, request: Request, period: str = Query(pattern=PERIOD),
                    format: Literal["json", "csv"] = "json", principal: Principal = Depends(READERS)) -> Any:
    """Not paged: one customer's usage for one period is a report, one row per meter and set of
    dimension values, whole as it is invoiced (issue 20)."""
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
        writer.writerow([domain.csv_cell(v) for v in (customer_id, period, line["meter"], dims, line["aggregation"],
                                                      line["unit"], line["quantity"], line["events"])])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="usage-{customer_id}-{period}.csv"'})
