"""Durable timers: claims due passivations and dispositions, commands them, re-commands
overdue ones (R6, R7).

Timers are rows in PostgreSQL, so they survive restarts and a scheduler that was down
catches up on its next pass. Each batch is one transaction that claims rows with
`FOR UPDATE SKIP LOCKED`, writes the evidence, closes the timers and puts the commands in
the outbox: with several replicas, a timer is commanded by exactly one of them.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from services.retention import storage
from services.retention.domain import (DISPOSING, Clock, Policy, active_hold_until, command_for, disposition_for,
                                      expected_confirmations)
from shared.db import BoundStore
from shared.messaging.outbox import Outbox
from shared.logging import get_logger

log = get_logger(__name__)


class RetentionGauges:
    """Due and overdue dispositions on the service's /metrics (ids never, counts only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.due = Gauge("rekisteri_retention_dispositions_due", "Dispositions past their deadline, not yet commanded",
                         registry=registry)
        self.overdue = Gauge("rekisteri_retention_dispositions_overdue",
                             "Dispositions commanded but not confirmed by every service in time", registry=registry)
        # Issue 14: the alarm. A person past their disposition deadline whom a hold in force or a
        # command some service has not confirmed in time still keeps (`timing.blocked_since`).
        self.blocked = Gauge("rekisteri_dispositions_blocked_past_deadline",
                             "Persons whose final disposition is past its deadline, kept by a hold or an unconfirmed command",
                             registry=registry)


@dataclass
class PassOutcome:
    """What one `run_due` pass did, for tests, benchmarks and logs."""

    passivated: int = 0
    erased: int = 0
    transferred: int = 0
    held: int = 0
    recommanded: int = 0
    commanded_person_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Scheduler:
    pool: asyncpg.Pool
    policy: Policy
    clock: Clock
    source: str = "retention"
    batch_size: int = 2000
    confirmation_timeout_s: float = 3600.0
    gauges: RetentionGauges | None = None

    async def run_due(self, now: datetime | None = None) -> PassOutcome:
        """Command everything due at `now` (the clock's time by default), then re-command overdue."""
        now = now or self.clock.now()
        outcome = PassOutcome()
        while await self._command_batch(now, outcome) == self.batch_size:
            pass
        cutoff = now - timedelta(seconds=self.confirmation_timeout_s)
        while await self._recommand_batch(now, cutoff, outcome) == self.batch_size:
            pass
        if outcome.passivated or outcome.erased or outcome.transferred or outcome.recommanded:
            log.info("retention_pass", passivated=outcome.passivated, erased=outcome.erased,
                     transferred=outcome.transferred, held=outcome.held, recommanded=outcome.recommanded)
        return outcome

    async def _command_batch(self, now: datetime, outcome: PassOutcome) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            store, outbox = BoundStore(storage, conn), Outbox(conn, self.source)
            claimed = await store.claim_due(now, self.batch_size)
            if not claimed:
                return 0
            dispose_ids = list({r["person_id"] for r in claimed if r["action"] == "dispose"})
            granted, banned, holds = await store.decision_facts(dispose_ids) if dispose_ids else ({}, {}, {})
            erasing = await store.erasure_requested(dispose_ids) if dispose_ids else set()
            evidence: list[dict] = []
            closed: list[int] = []
            deferred: list[tuple[int, datetime, uuid.UUID]] = []
            disposing: list[uuid.UUID] = []
            for row in claimed:
                person_id = row["person_id"]
                if row["action"] == "dispose":
                    person_holds = holds.get(person_id, [])
                    until = active_hold_until([h for _, h in person_holds], now)
                    if until is not None:  # R7 waits for the hold; re-checked when it expires
                        hold_id = next(i for i, h in person_holds if h.expires_at == until)
                        deferred.append((row["id"], until, hold_id))
                        outcome.held += 1
                        continue
                    action: str = disposition_for(granted.get(person_id, ()), banned.get(person_id, ()),
                                                  erasure_requested=person_id in erasing)
                    disposing.append(person_id)  # no timer runs for them again
                    if action == "erase":
                        outcome.erased += 1
                    else:
                        outcome.transferred += 1
                else:
                    # The person becomes passive when contacts confirms (`contact-passivated`), not now.
                    action = "passivate"
                    outcome.passivated += 1
                evidence.append(dict(person_id=person_id, action=action, basis=row["basis"],
                                     deadline_at=row["due_at"], policy_version=row["policy_version"],
                                     expected=expected_confirmations(action)))
                closed.append(row["id"])
                outcome.commanded_person_ids.append(person_id)
            if deferred:
                await store.defer_held(deferred)
            if closed:
                await store.close_deadlines(closed, now)
                if disposing:
                    await store.set_states(disposing, [DISPOSING] * len(disposing))
                commanded = await store.record_commands(evidence, now=now)
                await outbox.add_all([command_for(r) for r in commanded],
                                     correlation_ids=[str(r["command_id"]) for r in commanded])
            return len(claimed)

    async def _recommand_batch(self, now: datetime, cutoff: datetime, outcome: PassOutcome) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await storage.mark_overdue(conn, cutoff, self.batch_size, now=now)
            await Outbox(conn, self.source).add_all([command_for(r, recommanded=True) for r in rows],
                                                    correlation_ids=[str(r["command_id"]) for r in rows])
        outcome.recommanded += len(rows)
        if rows:
            log.warning("dispositions_overdue_recommanded", count=len(rows),
                        command_ids=[str(r["command_id"]) for r in rows[:20]])
        return len(rows)

    async def refresh_gauges(self, now: datetime | None = None) -> None:
        if self.gauges is None:
            return
        now = now or self.clock.now()
        async with self.pool.acquire() as conn:
            cutoff = now - timedelta(seconds=self.confirmation_timeout_s)
            due, overdue = await storage.gauge_counts(conn, now, cutoff)
            blocked = await storage.blocked_count(conn, now, cutoff)
        self.gauges.due.set(due)
        self.gauges.overdue.set(overdue)
        self.gauges.blocked.set(blocked)
