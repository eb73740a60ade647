"""Settings of the contacts service, read once at start-up."""
from __future__ import annotations

from shared.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    service_name: str = "contacts"
