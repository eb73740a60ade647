"""Settings of the billing service, read once at start-up."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

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
