"""Wires the retention service: settings, runtime, subscriptions and HTTP routes; nothing else."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.retention import api, handlers
from services.retention.domain import Clock
from services.retention.runtime import RetentionRuntime
from services.retention.settings import RetentionSettings
from shared.web.http import create_http_app

SETTINGS = RetentionSettings
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: RetentionSettings | None = None, clock: Clock | None = None) -> FastAPI:
    runtime = RetentionRuntime(settings or RetentionSettings(), MIGRATIONS, clock)
    handlers.register(runtime)
    return create_http_app(runtime, [api.router], description=__doc__ or "")
