"""The contacts process: the shared runtime plus its own gauge, overdue data-subject requests
(SPEC §10), refreshed on every `/metrics` read like the outbox gauges."""
from __future__ import annotations

from pathlib import Path

from prometheus_client import Gauge

from services.contacts import request_storage, storage
from services.contacts.deadlines import local_date
from shared.messaging.envelope import utcnow
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


class ContactsRuntime(ServiceRuntime):
    def __init__(self, settings: ServiceSettings, migrations_dir: Path | None) -> None:
        super().__init__("contacts", settings, migrations_dir, storage)
        self.requests_overdue = Gauge("rekisteri_requests_overdue",
                                      "Data-subject requests unanswered past their last day (Art. 12(3))",
                                      registry=self.metrics.registry)

    async def refresh_gauges(self) -> None:
        await super().refresh_gauges()
        if self.started:
            self.requests_overdue.set(await request_storage.overdue_count(self.pool, local_date(utcnow())))
