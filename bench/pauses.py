"""Where a latency benchmark's stalls come from: the garbage collector's pauses, per generation,
and the event loop's stalls (a ticker that wakes every few ms and records how late it woke).

Used around a measurement (`async with Pauses() as pauses: ...; pauses.figures()`), so a slow
p99 can be told apart: a gen-2 pause as long as the stall names the collector; a stall with no
pause beside it names code that held the loop.
"""
from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

TICK_S = 0.005
STALL_MS = 50.0  # a tick later than this counts as a stall


class Pauses:
    def __init__(self) -> None:
        self.gc_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.stalls_ms: list[float] = []
        self._started: float | None = None
        self._ticker: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.gc_ms[info["generation"]].append((time.perf_counter() - self._started) * 1000)
            self._started = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            late = (time.perf_counter() - before - TICK_S) * 1000
            if late > STALL_MS:
                self.stalls_ms.append(late)

    async def __aenter__(self) -> Pauses:
        gc.callbacks.append(self._on_gc)
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)
        if self._ticker is not None:
            self._ticker.cancel()

    def figures(self) -> dict[str, Any]:
        return {
            "gc_collections": {str(g): len(v) for g, v in self.gc_ms.items()},
            "gc_max_pause_ms": {str(g): round(max(v), 1) if v else 0.0 for g, v in self.gc_ms.items()},
            "gc_total_pause_ms": round(sum(sum(v) for v in self.gc_ms.values()), 1),
            f"loop_stalls_over_{STALL_MS:.0f}_ms": len(self.stalls_ms),
            "loop_stall_max_ms": round(max(self.stalls_ms), 1) if self.stalls_ms else 0.0,
        }
