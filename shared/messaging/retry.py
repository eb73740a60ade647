"""The one retry policy: which failures are the infrastructure's (wait, never give up) and how
long to wait between attempts (capped exponential backoff). Consumers, dead letters, the
outbox relay and background jobs all wait through this module."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from shared.logging import get_logger
from shared.privacy.crypto import KeyStoreUnavailable

log = get_logger(__name__)
T = TypeVar("T")

# The database or the network is away: retried until it answers, never a reason to dead-letter.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    KeyStoreUnavailable,  # the data-key store (issue 15): waited out like the database
)


@dataclass(frozen=True)
class Backoff:
    """`first_s`, doubling per attempt, never more than `max_s`."""

    first_s: float
    max_s: float

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * 2.0 ** max(0, attempt - 1))

    async def sleep(self, attempt: int) -> None:
        await asyncio.sleep(self.delay(attempt))


# A handler that failed for a reason of its own: a few quick retries, then the dead-letter topic.
HANDLER_FAILURE = Backoff(first_s=0.1, max_s=2.0)
# The database or broker is away: wait, longer each time, until it is back.
OUTAGE = Backoff(first_s=0.2, max_s=5.0)
# A background loop (relay, scheduler, job) that crashed: restarted after this.
RESTART = Backoff(first_s=1.0, max_s=30.0)


async def through_outages(call: Callable[[], Awaitable[T]], *, wait: bool, waiting: str, **context: Any) -> T:
    """`call()`, waiting out the infrastructure (`INFRASTRUCTURE_ERRORS`, `OUTAGE` backoff, a
    `waiting` warning per attempt with `context`) for as long as it is away. With `wait=False`
    (an HTTP caller, who answers 503 and lets the sender retry) the first such error is raised.
    Any other failure is the caller's to handle."""
    attempt = 0
    while True:
        try:
            return await call()
        except INFRASTRUCTURE_ERRORS as exc:
            if not wait:
                raise
            attempt += 1
            log.warning(waiting, error=type(exc).__name__, **context)
            await OUTAGE.sleep(attempt)
