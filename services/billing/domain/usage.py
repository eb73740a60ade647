"""Usage events (P3): what makes one unbillable, the dimensions it is kept per, and how a
batch of them folds into per-meter aggregates. No I/O."""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence

from services.billing.domain.periods import BEGINNING, period_of

ZERO = Decimal(0)

class Aggregation(StrEnum):
    sum = "sum"
    count = "count"  # type: ignore[assignment]  # a member named like str.count
    max = "max"
    unique_count = "unique_count"
    latest = "latest"


@dataclass(frozen=True)
class Meter:
    """What a meter measures: how its events aggregate and which dimensions it keeps."""

    name: str
    aggregation: Aggregation
    dimensions: tuple[str, ...] = ()
    unique_dimension: str | None = None
    unit: str = "unit"


def validate_usage(customer_known: bool, meter: Meter | None, quantity: Decimal, time: datetime,
                   dimensions: Mapping[str, str], now: datetime, max_future: timedelta) -> str | None:
    """Why a usage event cannot be billed (dead-letter reason), or None. Names the field
    and the rule, never the value."""
    if meter is None:
        return "meter: unknown meter"
    if not customer_known:
        return "customer_id: unknown customer (no price plan)"
    if not quantity.is_finite():
        return "quantity: must be a finite decimal number"
    if quantity < 0:
        return "quantity: must not be negative"
    if time > now + max_future:
        return "time: too far in the future"
    if meter.aggregation is Aggregation.unique_count and meter.unique_dimension not in dimensions:
        return f"dimensions.{meter.unique_dimension}: required by a unique_count meter"
    return None


BEFORE_FIRST_VERSION = "time: before the customer's first price plan version"


def usage_reasons(events: Sequence[Any], meters: Mapping[str, Meter], versions: Mapping[Any, Sequence[datetime]],
                  now: datetime, max_future: timedelta) -> list[str | None]:
    """`validate_usage` of a batch, and the price plan rule (usage before a customer's first
    plan version has nothing to be priced by): one reason (or None) per event.

    Ingestion's hot path (issue 21): a valid event costs a handful of comparisons; only an
    invalid one goes through `validate_usage` for its reason."""
    latest, unique = now + max_future, Aggregation.unique_count
    reasons: list[str | None] = []
    for event in events:
        meter, starts, at, quantity = meters.get(event.meter), versions.get(event.customer_id), event.time, event.quantity
        if (meter is not None and starts and starts[0] <= at <= latest and quantity.is_finite() and quantity >= 0
                and (meter.aggregation is not unique or meter.unique_dimension in event.dimensions)):
            reasons.append(None)
            continue
        reason = validate_usage(starts is not None, meter, quantity, at, event.dimensions, now, max_future)
        reasons.append(reason if reason is not None or (starts and at >= starts[0]) else BEFORE_FIRST_VERSION)
    return reasons


_DIMENSION_KEYS: dict[tuple, str] = {}


def dimension_key(meter: Meter, dimensions: Mapping[str, str]) -> str:
    """Canonical JSON of the dimensions the meter keeps usage per (cached: few distinct)."""
    if not meter.dimensions:
        return "{}"
    names = sorted(meter.dimensions)
    cache_key = (meter.name, tuple(names), *(dimensions.get(k) for k in names))  # names too: a meter can be redefined
    key = _DIMENSION_KEYS.get(cache_key)
    if key is None:
        if len(_DIMENSION_KEYS) > 100_000:
            _DIMENSION_KEYS.clear()
        key = _DIMENSION_KEYS[cache_key] = json.dumps(
            {k: dimensions[k] for k in names if k in dimensions}, separators=(",", ":"))
    return key


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class Aggregate:
    quantity_sum: Decimal = ZERO
    event_count: int = 0
    quantity_max: Decimal | None = None
    latest_quantity: Decimal | None = None
    latest_at: datetime | None = None

    def add(self, quantity: Decimal, at: datetime) -> None:
        self.quantity_sum += quantity
        self.event_count += 1
        if self.quantity_max is None or quantity > self.quantity_max:
            self.quantity_max = quantity
        if (self.latest_at is None or at > self.latest_at
                or (at == self.latest_at and quantity > self.latest_quantity)):  # type: ignore[operator]
            self.latest_quantity, self.latest_at = quantity, at


@dataclass
class UsageEvent:
    """The fields of a usage event that billing uses (`UsageRecorded` has the same)."""

    customer_id: Any
    person_id: Any
    meter: str
    quantity: Decimal
    time: datetime
    dimensions: Mapping[str, str]


@dataclass
class FoldedUsage:
    """A batch of usage folded into one row per key, each table's rows in key order (the
    order the upserts lock them in, so concurrent batches cannot deadlock). Folded before
    the transaction: which period's invoice bills a usage period is known only inside it."""

    aggregates: dict[tuple, Aggregate] = field(default_factory=dict)  # (customer, meter, period, dims, version)
    persons: dict[tuple, list] = field(default_factory=dict)  # (customer, person, meter, period) -> [count, sum]
    unique_values: list[tuple] = field(default_factory=list)  # (customer, meter, period, dims, version, value)
    # What it was folded from and with which plan-version revision: if the versions changed
    # before the transaction, the batch is folded again with the new ones.
    events: list[Any] = field(default_factory=list, repr=False)
    revision: int = 0

    @property
    def periods(self) -> set[str]:
        return {key[2] for key in self.aggregates}


def version_in_force(starts: Sequence[datetime], moment: datetime) -> datetime | None:
    """The effective-from of the plan version in force at `moment` (`starts` ascending), or
    None before the first."""
    if len(starts) == 1:  # the common case: one version
        return starts[0] if moment >= starts[0] else None
    index = bisect.bisect_right(starts, moment)
    return starts[index - 1] if index else None


def fold_usage(events: Sequence[Any], meters: Mapping[str, Meter],
               versions: Mapping[Any, Sequence[datetime]] | None = None, revision: int = 0) -> FoldedUsage:
    """Aggregate usage events into rows to upsert (pure: no I/O, no clock). Usage is kept
    per plan version in force at the event's time (`versions`: each customer's ascending
    effective-from instants), so a price change mid-month prices each part by its version.

    Ingestion's hot path (issue 21): values are read once per event, keys memoised for this
    call only (so a redefined meter is seen by the next batch), and an aggregate's first
    event starts it without a second pass over its fields."""
    # Keyed by the UUIDs' integers while folding: a UUID hashes and compares in Python, an int
    # in C, and every event looks up two or three keys. The UUIDs go back in at the end.
    aggregates: dict[tuple, Aggregate] = {}
    persons: dict[tuple, list] = {}
    uniques: set[tuple] = set()
    ids: dict[int, Any] = {}
    versions = versions or {}
    keying = _Keying(meters)
    for event in events:
        customer, at, quantity = event.customer_id, event.time, event.quantity
        meter, dims = keying.meter_and_dimensions(event.meter, event.dimensions)
        period = keying.period(at)
        starts = versions.get(customer)
        if starts is None:
            version = BEGINNING
        elif len(starts) == 1:  # the common case, inline
            version = starts[0]
        else:
            version = version_in_force(starts, at) or starts[0]
        number = customer.int
        key = (number, meter.name, period, dims, version)
        agg = aggregates.get(key)
        if agg is None:
            aggregates[key] = Aggregate(ZERO + quantity, 1, quantity, quantity, at)  # as `add` on an empty one
            ids[number] = customer
        else:
            agg.add(quantity, at)
        person = event.person_id
        if person is not None:
            pkey = (number, person.int, meter.name, period)
            slot = persons.get(pkey)
            if slot is None:
                persons[pkey] = [1, quantity]
                ids[pkey[1]] = person
            else:
                slot[0] += 1
                slot[1] += quantity
        if meter.aggregation is Aggregation.unique_count:
            uniques.add((number, meter.name, period, dims, version, event.dimensions[meter.unique_dimension]))
    return _in_key_order(aggregates, persons, uniques, ids, FoldedUsage(
        events=events if isinstance(events, list) else list(events), revision=revision))


def _in_key_order(aggregates: dict[tuple, Aggregate], persons: dict[tuple, list], uniques: set[tuple],
                  ids: dict[int, Any], folded: FoldedUsage) -> FoldedUsage:
    """The fold's rows sorted on the UUIDs' integers (the order the upserts lock them in),
    with the UUIDs put back in their keys."""
    folded.aggregates = {(ids[k[0]], *k[1:]): v for k, v in sorted(aggregates.items())}
    folded.persons = {(ids[k[0]], ids[k[1]], *k[2:]): v for k, v in sorted(persons.items())}
    folded.unique_values = [(ids[k[0]], *k[1:]) for k in sorted(uniques)]
    return folded


class _Keying:
    """One fold's memo of meters' dimension keys and of the period of each UTC hour."""

    def __init__(self, meters: Mapping[str, Meter]) -> None:
        self.meters = meters
        self.dimensions: dict[tuple, tuple[Meter, str]] = {}
        self.periods: dict[int, str] = {}

    def meter_and_dimensions(self, name: str, dimensions: Mapping[str, str]) -> tuple[Meter, str]:
        memo_key = (name, *dimensions.items())
        found = self.dimensions.get(memo_key)
        if found is None:
            meter = self.meters[name]
            found = self.dimensions[memo_key] = (meter, dimension_key(meter, dimensions))
        return found

    def period(self, moment: datetime) -> str:
        hour = int(moment.timestamp()) // 3600  # an hour in UTC lies in one Helsinki month
        found = self.periods.get(hour)
        if found is None:
            found = self.periods[hour] = period_of(moment)
        return found


def meter_quantity(aggregation: Aggregation, rows: Sequence[Mapping[str, Any]], unique_values: Iterable[str] = ()
                   ) -> Decimal:
    """The billable quantity of aggregate rows (and distinct values) of one meter."""
    if aggregation is Aggregation.unique_count:
        return Decimal(len(set(unique_values)))
    if not rows:
        return ZERO
    if aggregation is Aggregation.sum:
        return sum((Decimal(r["quantity_sum"]) for r in rows), ZERO)
    if aggregation is Aggregation.count:
        return Decimal(sum(int(r["event_count"]) for r in rows))
    if aggregation is Aggregation.max:
        return max(Decimal(r["quantity_max"]) for r in rows if r["quantity_max"] is not None)
    latest = max(rows, key=lambda r: (r["latest_at"], Decimal(r["latest_quantity"])))
    return Decimal(latest["latest_quantity"])
