"""The retention process: the shared runtime plus the policy, a replaceable clock, the
metrics gauges and the scheduler job."""
from __future__ import annotations

import asyncio
from pathlib import Path

from services.retention import storage
from services.retention.domain import Clock, SystemClock
from services.retention.scheduler import RetentionGauges, Scheduler
from services.retention.settings import RetentionSettings
from services.retention.timers import replan_stale
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


class RetentionRuntime(ServiceRuntime):
    """`clock` may be replaced at any time (tests: `FrozenClock`); every pass reads it anew."""

    settings: RetentionSettings

    def __init__(self, settings: RetentionSettings, migrations_dir: Path | None, clock: Clock | None = None) -> None:
        super().__init__("retention", settings, migrations_dir, storage)
        self.policy = settings.policy()
        self.clock: Clock = clock or SystemClock()
        self.gauges = RetentionGauges(self.metrics.registry)
        self.add_job("scheduler", scheduler_job)

    @property
    def scheduler(self) -> Scheduler:
        s = self.settings
        return Scheduler(self.pool, self.policy, self.clock, source=self.name,
                         batch_size=s.retention_scheduler_batch_size,
                         confirmation_timeout_s=s.retention_confirmation_timeout_s, gauges=self.gauges)

    async def refresh_gauges(self) -> None:
        await super().refresh_gauges()
        if self.started:
            await self.scheduler.refresh_gauges()


async def scheduler_job(runtime: ServiceRuntime) -> None:
    """A pass every RETENTION_SCHEDULER_INTERVAL_S; a pass catches up on whatever fell due meanwhile."""
    assert isinstance(runtime, RetentionRuntime)
    await replan_stale(runtime.pool, runtime.policy)  # before the first pass: no timer fires under an old rule
    while not runtime.stopping.is_set():
        scheduler = runtime.scheduler
        await scheduler.run_due()
        await scheduler.refresh_gauges()
        try:
            await asyncio.wait_for(runtime.stopping.wait(), timeout=runtime.settings.retention_scheduler_interval_s)
        except TimeoutError:
            pass
