"""Settings of the retention service, read once at start-up."""
from __future__ import annotations

from shared.settings import ServiceSettings


class RetentionSettings(ServiceSettings):
    service_name: str = "retention"
