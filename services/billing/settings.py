"""Settings of the billing service, read once at start-up."""
from __future__ import annotations

from shared.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
