"""The one retry policy: which failures are the infrastructure's (wait, never give up) and how
long to wait between attempts (capped exponential backoff). Consumers, dead letters, the
outbox relay and background jobs all wait through this module."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

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
)


@dataclass(frozen=True)
class Backoff:
    """`first_s`, doubling per attempt, never more than `max_s`."""

    first_s: float
    max_s: float

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * 2 ** max(0, attempt - 1))

    async def sleep(self, attempt: int) -> None:
        await asyncio.sleep(self.delay(attempt))


# A handler that failed for a reason of its own: a few quick retries, then the dead-letter topic.
HANDLER_FAILURE = Backoff(first_s=0.1, max_s=2.0)
# The database or broker is away: wait, longer each time, until it is back.
OUTAGE = Backoff(first_s=0.2, max_s=5.0)
# A background loop (relay, scheduler, job) that crashed: restarted after this.
RESTART = Backoff(first_s=1.0, max_s=30.0)
