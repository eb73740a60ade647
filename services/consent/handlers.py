"""Event handlers of the consent service: one function per consumed topic."""
from __future__ import annotations

from shared.consumer import EventContext
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


async def on_optout_registered(ctx: EventContext) -> None:
    log.info("event_received", topic=ctx.topic, event_id=str(ctx.envelope.id))


def register(runtime: ServiceRuntime) -> None:
    runtime.subscribe("optout-registered", on_optout_registered)
