"""Wires the contacts service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.contacts import api, handlers
from services.contacts.settings import ContactsSettings
from shared.http import create_http_app
from shared.runtime import ServiceRuntime

SETTINGS = ContactsSettings
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: ContactsSettings | None = None) -> FastAPI:
    runtime = ServiceRuntime("contacts", settings or ContactsSettings(), MIGRATIONS)
    handlers.register(runtime)
    return create_http_app(runtime, [api.router], description=__doc__ or "")
