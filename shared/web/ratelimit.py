"""Token buckets for rate limits (logins per IP and per username, batch checks per user).

In-process: each replica counts on its own, so N replicas admit up to N times the rate. A
multi-replica deployment that needs one limit shares the counts (a PostgreSQL table or
Redis) or pins clients to replicas; the register ships the in-process form (issue 16).
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable

from shared.errors import RegisterError


class RateLimited(RegisterError):
    """429 with a `Retry-After` header (seconds)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class TokenBuckets:
    """`capacity` requests at once per key, refilled at `per_minute` a minute. Keys beyond
    `max_keys` evict the least recently used (a full bucket is what a new key gets anyway)."""

    def __init__(self, capacity: float, per_minute: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.rate_per_s = float(capacity), per_minute / 60.0
        self.max_keys, self.clock = max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 if allowed, else the seconds until they would be there."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate_per_s)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate_per_s if self.rate_per_s > 0 else float("inf")
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check(self, key: str, what: str, cost: float = 1.0) -> None:
        wait = self.take(key, cost)
        if wait > 0:
            raise RateLimited(f"too many {what}; retry later", wait)
