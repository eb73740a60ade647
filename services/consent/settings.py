"""Settings of the consent service, read once at start-up."""
from __future__ import annotations

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    service_name: str = "consent"
