"""Retention's SQL (asyncpg, bound parameters), one module per concern: person facts, the
scheduler's claims and confirmations, reports.

Lock order everywhere is person row, then its deadlines: event handlers lock the person
(`lock_person`) before touching timers, and the scheduler claims deadlines together with
their person rows using SKIP LOCKED, so replicas and handlers never wait on each other in
a cycle and no person is disposed of twice. Callers reach these as `storage.f`.
"""
from services.retention.storage.persons import *  # noqa: F403
from services.retention.storage.reports import *  # noqa: F403
from services.retention.storage.scheduling import *  # noqa: F403
