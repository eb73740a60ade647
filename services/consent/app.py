"""Wires the consent service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.consent import api, handlers, proof, storage
from services.consent.settings import ConsentSettings
from shared.web.http import create_http_app
from shared.runtime import ServiceRuntime

SETTINGS = ConsentSettings
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: ConsentSettings | None = None) -> FastAPI:
    runtime = ServiceRuntime("consent", settings or ConsentSettings(), MIGRATIONS, storage)
    handlers.register(runtime)
    return create_http_app(runtime, [api.router, proof.router], description=__doc__ or "")
