"""Event handlers of the billing service: one function per consumed topic."""
from __future__ import annotations

from shared.consumer import EventContext
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


async def on_usage_recorded(ctx: EventContext) -> None:
    log.info("event_received", topic=ctx.topic, event_id=str(ctx.envelope.id))


def register(runtime: ServiceRuntime) -> None:
    runtime.subscribe("usage-recorded", on_usage_recorded)
