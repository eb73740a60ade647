"""An in-memory stand-in for billing's storage (what its handlers call through `ctx.store` /
`uow.store`), each function modelling its SQL in `services/billing/storage.py`. Rows are keyed
by their table's primary key; the integration tests run the real SQL."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.billing import domain


@dataclass
class BillingStore:
    periods: dict[str, str] = field(default_factory=dict)  # period → open | closed
    # (customer, meter, usage period, invoice period, dimensions) → the aggregate's columns
    aggregates: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    # (customer, person, meter, period) → event_count, quantity_sum, pseudonymised
    persons: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    # (customer, meter, period, dimensions, value) → the invoice period of its first sighting
    unique_values: dict[tuple, str] = field(default_factory=dict)
    locked: list[list[str]] = field(default_factory=list)  # the periods each batch share-locked, in order

    async def lock_invoice_periods(self, usage_periods: set[str]) -> dict[str, str]:
        wanted = sorted(usage_periods)
        for period in wanted:  # a period's first usage adds it, open
            self.periods.setdefault(period, "open")
        targets = {p: p for p in wanted if self.periods[p] == "open"}
        closed = {p for p, s in self.periods.items() if s == "closed"}
        for period in (p for p in wanted if self.periods[p] == "closed"):
            target = domain.invoice_target(period, closed)
            self.periods.setdefault(target, "open")
            targets[period] = target
        self.locked.append(sorted(set(targets.values()) | set(wanted)))
        return targets

    async def apply_folded_usage(self, folded: domain.FoldedUsage, targets: dict[str, str]) -> None:
        for (customer, meter, period, dims), agg in folded.aggregates.items():
            key = (customer, meter, period, targets[period], dims)
            row = self.aggregates.get(key)
            if row is None:
                self.aggregates[key] = dict(quantity_sum=agg.quantity_sum, event_count=agg.event_count,
                                            quantity_max=agg.quantity_max, latest_quantity=agg.latest_quantity,
                                            latest_at=agg.latest_at)
                continue
            newer = agg.latest_at > row["latest_at"] or (agg.latest_at == row["latest_at"]
                                                         and agg.latest_quantity > row["latest_quantity"])
            row.update(quantity_sum=row["quantity_sum"] + agg.quantity_sum,
                       event_count=row["event_count"] + agg.event_count,
                       quantity_max=max(row["quantity_max"], agg.quantity_max),
                       latest_quantity=agg.latest_quantity if newer else row["latest_quantity"],
                       latest_at=max(row["latest_at"], agg.latest_at))
        for key, (count, quantity) in folded.persons.items():
            row = self.persons.setdefault(key, dict(event_count=0, quantity_sum=Decimal(0), pseudonymised=False))
            row["event_count"] += count
            row["quantity_sum"] += quantity
        for key in folded.unique_values:  # the first sighting decides the invoice period
            self.unique_values.setdefault(key, targets[key[2]])

    async def person_usage(self, person_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = [dict(customer_id=c, meter=m, period=p, event_count=r["event_count"], quantity_sum=r["quantity_sum"])
                for (c, person, m, p), r in self.persons.items() if person == person_id]
        return sorted(rows, key=lambda r: (r["period"], str(r["customer_id"]), r["meter"]))

    async def pseudonymise_person(self, person_id: uuid.UUID) -> int:
        pseudonym, count = uuid.uuid4(), 0
        for (c, person, m, p) in list(self.persons):
            if person == person_id:
                row = self.persons.pop((c, person, m, p))
                self.persons[(c, pseudonym, m, p)] = dict(row, pseudonymised=True)
                count += 1
        return count
