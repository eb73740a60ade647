"""Settings of the billing service, read once at start-up."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import field_validator

from services.billing.parties import Address, Seller, seller_problems
from shared.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    # Finnish general VAT rate (percent) by the date it took effect; env BILLING_VAT_RATES as JSON.
    billing_vat_rates: dict[date, Decimal] = {date(2013, 1, 1): Decimal("24"), date(2024, 9, 1): Decimal("25.5")}
    # Usage stamped further ahead than this (clock skew allowance) is dead-lettered.
    billing_max_future_s: int = 24 * 3600
    # The scheduled close: once a month has ended and this grace has passed, close it.
    billing_auto_close: bool = True
    billing_close_grace_hours: int = 72
    billing_close_check_interval_s: float = 300.0
    # Events per batch transaction on usage-recorded.
    billing_batch_max_records: int = 2000
    # The invoicing company (issue 18): env BILLING_SELLER as JSON; checked at start-up.
    billing_seller: Seller = Seller(
        name="Esimerkki Oy", business_id="1234567-1", vat_number="FI12345671",
        address=Address(street="Esimerkkikatu 1", postal_code="00100", city="Helsinki"),
        iban="FI21 1234 5600 0007 85", bic="NDEAFIHH", einvoice_address="003712345671", einvoice_operator="NDEAFIHH")
    # Credit notes numbered in the invoices' series ("same") or in a series of their own ("own").
    billing_credit_note_series: Literal["same", "own"] = "own"
    billing_invoice_number_prefix: str = ""
    billing_credit_note_number_prefix: str = "H"

    @field_validator("billing_seller")
    @classmethod
    def _seller_valid(cls, seller: Seller) -> Seller:
        if problems := seller_problems(seller):
            raise ValueError("billing_seller: " + "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())))
        return seller
