"""Wires the contacts service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.contacts import (access, api, handlers, objections, portability, processing_record, processors,
                               requests, storage, verification)
from shared.passwords import Passwords
from services.contacts.runtime import ContactsRuntime
from services.contacts.settings import ContactsSettings
from shared.web.http import create_http_app

SETTINGS = ContactsSettings
MIGRATIONS = Path(__file__).parent / "migrations"
DESCRIPTION = ("Contacts: organisations, business contact persons, accounts, relationships, assignments, "
               "lifecycle, audit, rectification and access reports (R1-R6, R9-R12, R14).")


def build_app(settings: ContactsSettings | None = None) -> FastAPI:
    settings = settings or ContactsSettings()
    runtime = ContactsRuntime(settings, MIGRATIONS)
    storage.use_suppression_keys(settings.suppression_keyring(), settings.suppression_chain_ttl_s)
    handlers.register(runtime)
    routers = [api.router, access.router, requests.router, verification.router, portability.router,
               processors.router, processing_record.router, objections.router]
    app = create_http_app(runtime, routers, description=DESCRIPTION)
    app.state.passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    return app
