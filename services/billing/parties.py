"""The seller and the buyers of an invoice (issue 18): the seller from configuration, buyers
as billing customers. Pure: models and their checks, which name the field and the rule."""
from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.billing import finnish

# An e-invoice address: an OVT code (0037 + business id digits + optional suffix), a Peppol
# participant id (scheme:id, e.g. 0216:003712345671) or an IBAN (Finvoice to a bank).
_EINVOICE_ADDRESS = re.compile(r"^(0037\d{8}[A-Z0-9]{0,5}|\d{4}:[A-Za-z0-9.\-]{1,50}|FI\d{16})$")
_OPERATOR = re.compile(r"^[A-Z0-9]{4,35}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(_Model):
    street: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    country_code: str = Field(default="FI", pattern=r"^[A-Z]{2}$")


class Seller(_Model):
    """The invoicing company (configuration: env BILLING_SELLER as JSON)."""

    name: str = Field(min_length=1, max_length=200)
    business_id: str
    vat_number: str
    address: Address
    iban: str
    bic: str
    einvoice_address: str
    einvoice_operator: str
    penalty_interest: str = "11.5"  # percent a year: the reference rate + 7 points (Korkolaki 4 §)


class BillingCustomer(_Model):
    """A buyer: an organisation the company invoices (its contact person is optional)."""

    name: str = Field(min_length=1, max_length=200)
    business_id: str
    vat_number: str | None = None
    address: Address
    einvoice_address: str | None = None
    einvoice_operator: str | None = None
    payment_terms_days: int = Field(default=14, ge=0, le=365)
    language: Literal["fi", "en"] = "fi"
    contact_person_id: uuid.UUID | None = None  # a person in the register, if any (R3 payment data)


def _einvoice_problems(address: str | None, operator: str | None) -> dict[str, str]:
    problems = {}
    if address is not None and not _EINVOICE_ADDRESS.match(address):
        problems["einvoice_address"] = "must be an OVT code (0037 + 8 digits), a Peppol id (scheme:id) or an IBAN"
    elif address is not None and address.startswith("FI") and (problem := finnish.iban_problem(address)):
        problems["einvoice_address"] = f"IBAN {problem}"
    if operator is not None and not _OPERATOR.match(operator):
        problems["einvoice_operator"] = "must be the operator's id (OVT or BIC), 4 to 35 letters and digits"
    if (address is None) != (operator is None):
        problems["einvoice_operator" if operator is None else "einvoice_address"] = \
            "an e-invoice address and its operator go together"
    return problems


def customer_problems(customer: BillingCustomer) -> dict[str, str]:
    """Field → rule for each check a billing customer fails (empty when valid)."""
    problems = {}
    if problem := finnish.business_id_problem(customer.business_id):
        problems["business_id"] = problem
    if customer.vat_number is not None and (problem := finnish.vat_number_problem(
            customer.vat_number, None if "business_id" in problems else customer.business_id)):
        problems["vat_number"] = problem
    return problems | _einvoice_problems(customer.einvoice_address, customer.einvoice_operator)


def seller_problems(seller: Seller) -> dict[str, str]:
    problems = {}
    if problem := finnish.business_id_problem(seller.business_id):
        problems["business_id"] = problem
    if problem := finnish.vat_number_problem(seller.vat_number, seller.business_id):
        problems["vat_number"] = problem
    if problem := finnish.iban_problem(seller.iban):
        problems["iban"] = problem
    if problem := finnish.bic_problem(seller.bic):
        problems["bic"] = problem
    return problems | _einvoice_problems(seller.einvoice_address, seller.einvoice_operator)


def snapshot(seller: Seller, buyer: BillingCustomer | None) -> dict[str, Any]:
    """The parties as written into an invoice at issue: later changes do not alter it."""
    return {"seller": seller.model_dump(mode="json"), "buyer": buyer.model_dump(mode="json") if buyer else None}
