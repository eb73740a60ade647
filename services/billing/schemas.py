"""The billing service's HTTP answers as models (issue 17): the OpenAPI document names every
field, and FastAPI checks each answer against it. Amounts are decimal strings (EUR)."""
from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.billing import domain
from services.billing.parties import BillingCustomer
from shared.web.openapi import with_example
from shared.web.paging import next_field

CUSTOMER = "2f1d6a8e-3c4b-4e55-9a0e-7d1c2b3a4f50"
INVOICE = "8c3e5b2a-1d4f-4a6b-9e7c-0f1a2b3c4d5e"
PLAN_EXAMPLE = {"flat_fee": "49.00", "minimum_commitment": "0", "components": [
    {"meter": "api_calls", "model": "per_unit", "unit_price": "0.002"}]}
CUSTOMER_EXAMPLE = {"name": "Esimerkki Oy", "business_id": "1234567-1", "vat_number": "FI12345671",
                    "address": {"street": "Mannerheimintie 1", "postal_code": "00100", "city": "Helsinki",
                                "country_code": "FI"},
                    "einvoice_address": "003712345671", "einvoice_operator": "003721291126",
                    "payment_terms_days": 14, "language": "fi", "contact_person_id": None}
INVOICE_EXAMPLE = {
    "invoice_id": INVOICE, "customer_id": CUSTOMER, "period": "2025-02", "kind": "invoice", "credits": None,
    "reason": None, "net": "49.00", "vat_rate": "25.5", "vat": "12.50", "gross": "61.50", "currency": "EUR",
    "lines": [{"kind": "flat_fee", "description": "Monthly fee", "net": "49.00"}],
    "issued_at": "2025-03-01T00:05:00+00:00", "invoice_number": "2025-000017", "reference": "20250000172",
    "rf_reference": "RF4820250000172", "due_date": "2025-03-15", "buyer": CUSTOMER_EXAMPLE}


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"name": "api_calls", "aggregation": "sum", "dimensions": ["endpoint"], "unique_dimension": None,
         "unit": "call"}))

    name: str
    aggregation: domain.Aggregation
    dimensions: list[str]
    unique_dimension: str | None
    unit: str


class Meters(Answer):
    """A page of meters by name (issue 20): `next` is the `cursor` of the next page."""

    model_config = ConfigDict(json_schema_extra=with_example({"meters": [
        {"name": "api_calls", "aggregation": "sum", "dimensions": ["endpoint"], "unique_dimension": None,
         "unit": "call"}], "next": None}))

    meters: list[MeterOut]
    next: str | None = next_field()


class PlanVersionOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example(
        {"customer_id": CUSTOMER, "effective_from": "2025-03-01T00:00:00+00:00", "plan": PLAN_EXAMPLE}))

    customer_id: uuid.UUID
    effective_from: str
    plan: domain.PricePlan


class PlanOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example({"customer_id": CUSTOMER, "plan": PLAN_EXAMPLE}))

    customer_id: uuid.UUID
    plan: domain.PricePlan


class PlanVersion(Answer):
    effective_from: str
    effective_until: str | None
    plan: domain.PricePlan


class PlanVersionsOut(Answer):
    """A page of versions, oldest first (issue 20): `next` is the `cursor` of the next page."""

    model_config = ConfigDict(json_schema_extra=with_example({"customer_id": CUSTOMER, "versions": [
        {"effective_from": "0001-01-01T00:00:00+00:00", "effective_until": None, "plan": PLAN_EXAMPLE}],
        "next": None}))

    customer_id: uuid.UUID
    versions: list[PlanVersion]
    next: str | None = next_field()


class CloseOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example({"period": "2025-02", "status": "closed", "issued": 12}))

    period: str
    status: Literal["closed"]
    issued: int


class Payment(Answer):
    paid: str
    credited: str
    open: str
    status: str
    days_overdue: int | None


class InvoiceOut(Answer):
    """An invoice or credit note as issued (immutable, SPEC §6)."""

    model_config = ConfigDict(json_schema_extra=with_example(INVOICE_EXAMPLE))

    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    period: str
    kind: Literal["invoice", "credit_note"]
    credits: uuid.UUID | None
    reason: str | None
    net: str
    vat_rate: str
    vat: str
    gross: str
    currency: str
    lines: list[dict[str, Any]]
    issued_at: str
    invoice_number: str | None
    reference: str | None
    rf_reference: str | None
    due_date: str | None
    buyer: dict[str, Any] | None


class InvoiceWithPayment(InvoiceOut):
    model_config = ConfigDict(json_schema_extra=with_example(INVOICE_EXAMPLE | {"payment": {
        "paid": "0.00", "credited": "0.00", "open": "61.50", "status": "unpaid", "days_overdue": 0}}))

    payment: Payment | None = None


class InvoicePage(Answer):
    """One page of invoices; pass `next` back as `cursor` for the following page (issues 16, 20)."""

    model_config = ConfigDict(json_schema_extra=with_example(
        {"invoices": [INVOICE_EXAMPLE], "has_more": True,
         "next": "WyIyMDI1LTAzLTAxVDAwOjA1OjAwKzAwOjAwIiwgIjhjM2U0ZjVhLTZiN2MtNGQ4ZS05ZjBhLTFiMmMzZDRlNWY2YSJd"}))

    invoices: list[InvoiceOut]
    has_more: bool = Field(description="Whether `next` is set: more invoices after this page")
    next: str | None = next_field()


class Receivable(Answer):
    invoice_id: uuid.UUID
    invoice_number: str | None
    customer_id: uuid.UUID
    period: str
    reference: str | None
    due_date: str | None
    gross: str
    credited: str
    paid: str
    open: str
    status: str
    days_overdue: int | None
    age: str


class ReceivablesOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example({"as_of": "2025-04-01", "open_total": "61.50", "receivables": [
        {"invoice_id": INVOICE, "invoice_number": "2025-000017", "customer_id": CUSTOMER, "period": "2025-02",
         "reference": "20250000172", "due_date": "2025-03-15", "gross": "61.50", "credited": "0.00", "paid": "0.00",
         "open": "61.50", "status": "unpaid", "days_overdue": 17, "age": "1-30"}], "next": None}))

    as_of: str
    receivables: list[Receivable]
    open_total: str = Field(description="The open amount of every receivable, not only this page's")
    next: str | None = next_field()


class CustomerOut(BillingCustomer):
    model_config = ConfigDict(json_schema_extra=with_example({"customer_id": CUSTOMER, **CUSTOMER_EXAMPLE}))

    customer_id: uuid.UUID


class UsageLine(Answer):
    meter: str
    aggregation: domain.Aggregation
    unit: str
    dimensions: dict[str, Any]
    quantity: str
    events: int


class UsageOut(Answer):
    model_config = ConfigDict(json_schema_extra=with_example({"customer_id": CUSTOMER, "period": "2025-02", "usage": [
        {"meter": "api_calls", "aggregation": "sum", "unit": "call", "dimensions": {"endpoint": "/v1/search"},
         "quantity": "1520", "events": 1520}]}))

    customer_id: uuid.UUID
    period: str
    usage: list[UsageLine]
