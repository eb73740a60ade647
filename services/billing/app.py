"""Wires the billing service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.billing import api, handlers, payments, storage
from services.billing.settings import BillingSettings
from shared.web.http import create_http_app
from shared.runtime import ServiceRuntime

SETTINGS = BillingSettings
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: BillingSettings | None = None) -> FastAPI:
    runtime = ServiceRuntime("billing", settings or BillingSettings(), MIGRATIONS, (storage, payments))
    billing = handlers.register(runtime)
    app = create_http_app(runtime, [api.router], description=__doc__ or "")
    app.state.billing = billing
    return app
