"""Wires the retention service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.retention import api, handlers
from services.retention.settings import RetentionSettings
from shared.http import create_http_app
from shared.runtime import ServiceRuntime

SETTINGS = RetentionSettings
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: RetentionSettings | None = None) -> FastAPI:
    runtime = ServiceRuntime("retention", settings or RetentionSettings(), MIGRATIONS)
    handlers.register(runtime)
    return create_http_app(runtime, [api.router], description=__doc__ or "")
