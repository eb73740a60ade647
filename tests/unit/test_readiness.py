"""`/readyz` asks the database and the broker at once (SPEC §7): with the broker gone its ping
takes the whole bound, and a sequential check made every answer wait for both bounds, longer
than an operator's probe (or the supervision test's window) waits."""
from __future__ import annotations

import asyncio

from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


class PoolWaitingForThePing:
    """Answers `SELECT 1` only once the broker's ping has started: checks asked one after the
    other never see both answer."""

    def __init__(self, ping_started: asyncio.Event) -> None:
        self.ping_started = ping_started

    async def fetchval(self, query: str) -> int:
        await self.ping_started.wait()
        return 1


async def test_readiness_asks_the_database_and_the_broker_at_the_same_time():
    runtime = ServiceRuntime("contacts", ServiceSettings(), None)
    ping_started = asyncio.Event()
    runtime._pool = PoolWaitingForThePing(ping_started)  # type: ignore[assignment]

    async def ping(timeout: float | None) -> bool:
        ping_started.set()
        return True
    runtime.broker.ping = ping  # type: ignore[method-assign]
    assert await runtime.readiness() == {"database": True, "broker": True}


async def test_readiness_names_a_failing_check_false_and_the_other_true():
    runtime = ServiceRuntime("contacts", ServiceSettings(), None)
    ping_started = asyncio.Event()
    ping_started.set()
    runtime._pool = PoolWaitingForThePing(ping_started)  # type: ignore[assignment]

    async def unreachable(timeout: float | None) -> bool:
        raise ConnectionError("broker gone")
    runtime.broker.ping = unreachable  # type: ignore[method-assign]
    assert await runtime.readiness() == {"database": True, "broker": False}
