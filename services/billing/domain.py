"""Billing rules as functions of values (P3, SPEC §6): periods, usage validation and
aggregation, rating with price plans, invoice lines, VAT. No I/O here.

Money is Decimal throughout and rounded once per invoice line (to the cent, half up);
VAT is computed on the invoice's net total, once.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Iterable, Literal, Mapping, Sequence
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

HELSINKI = ZoneInfo("Europe/Helsinki")
CENT = Decimal("0.01")
ZERO = Decimal(0)
# The effective-from of a customer's first plan version when none was given: before any usage.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class Aggregation(StrEnum):
    sum = "sum"
    count = "count"
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


# ---- periods: calendar months in Europe/Helsinki ------------------------------------

_PERIOD_BY_HOUR: dict[int, str] = {}


def period_of(moment: datetime) -> str:
    """The Helsinki calendar month of `moment`. Cached per UTC hour: Helsinki's offset is a
    whole number of hours and changes on the hour, so a UTC hour lies in one local month."""
    hour = int(moment.timestamp()) // 3600
    period = _PERIOD_BY_HOUR.get(hour)
    if period is None:
        if len(_PERIOD_BY_HOUR) > 100_000:
            _PERIOD_BY_HOUR.clear()
        local = moment.astimezone(HELSINKI)
        period = _PERIOD_BY_HOUR[hour] = f"{local.year:04d}-{local.month:02d}"
    return period


def _ym(period: str) -> tuple[int, int]:
    return int(period[:4]), int(period[5:7])


def next_period(period: str) -> str:
    year, month = _ym(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def period_start(period: str) -> datetime:
    year, month = _ym(period)
    return datetime(year, month, 1, tzinfo=HELSINKI)


def period_last_day(period: str) -> date:
    return (period_start(next_period(period)) - timedelta(days=1)).date()


def period_has_ended(period: str, now: datetime) -> bool:
    return now >= period_start(next_period(period))


def period_due_for_close(now: datetime, grace: timedelta) -> str | None:
    """The period the scheduled close should close at `now`: last month, once it has ended
    and the grace for late events has passed; None before that."""
    previous = period_of(period_start(period_of(now)) - timedelta(days=1))
    return previous if now >= period_start(next_period(previous)) + grace else None


def invoice_target(usage_period: str, closed: set[str]) -> str:
    """The invoice that bills usage of `usage_period`: its own, or once that is closed,
    the next one not yet closed (a late event becomes an adjustment there)."""
    target = usage_period
    while target in closed:
        target = next_period(target)
    return target


# ---- validation and aggregation of usage events ------------------------------------

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
    effective-from instants), so a price change mid-month prices each part by its version."""
    aggregates: dict[tuple, Aggregate] = {}
    persons: dict[tuple, list] = {}
    uniques: set[tuple] = set()
    versions = versions or {}
    for event in events:
        meter = meters[event.meter]
        dims = dimension_key(meter, event.dimensions)
        period = period_of(event.time)
        starts = versions.get(event.customer_id)
        if starts is None:
            version = BEGINNING
        elif len(starts) == 1:  # the common case, inline: this loop is ingestion's hot path
            version = starts[0]
        else:
            version = version_in_force(starts, event.time) or starts[0]
        key = (event.customer_id, meter.name, period, dims, version)
        agg = aggregates.get(key)
        if agg is None:
            agg = aggregates[key] = Aggregate()
        agg.add(event.quantity, event.time)
        if event.person_id is not None:
            pkey = (event.customer_id, event.person_id, meter.name, period)
            slot = persons.get(pkey)
            if slot is None:
                persons[pkey] = [1, event.quantity]
            else:
                slot[0] += 1
                slot[1] += event.quantity
        if meter.aggregation is Aggregation.unique_count:
            uniques.add((event.customer_id, meter.name, period, dims, version,
                         event.dimensions[meter.unique_dimension]))
    # UUIDs compare by their integer; sorting on it keeps the comparisons in C.
    return FoldedUsage(
        aggregates=dict(sorted(aggregates.items(), key=lambda item: (item[0][0].int, *item[0][1:]))),
        persons=dict(sorted(persons.items(), key=lambda item: (item[0][0].int, item[0][1].int, *item[0][2:]))),
        unique_values=sorted(uniques, key=lambda k: (k[0].int, *k[1:])),
        events=events if isinstance(events, list) else list(events), revision=revision)


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


# ---- price plans ------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tier(_Model):
    up_to: Decimal | None = Field(default=None, gt=0)  # None: no upper bound (the last tier)
    unit_price: Decimal = Field(default=ZERO, ge=0)
    flat_fee: Decimal = Field(default=ZERO, ge=0)


class Component(_Model):
    """How one meter is priced."""

    meter: str = Field(min_length=1, max_length=100)
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit_price: Decimal | None = Field(default=None, ge=0)
    tiers: list[Tier] = Field(default_factory=list)
    package_size: Decimal | None = Field(default=None, gt=0)
    package_price: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> "Component":
        if self.model == "per_unit" and self.unit_price is None:
            raise ValueError("per_unit needs unit_price")
        if self.model == "package" and (self.package_size is None or self.package_price is None):
            raise ValueError("package needs package_size and package_price")
        if self.model in ("graduated", "volume"):
            if not self.tiers:
                raise ValueError(f"{self.model} needs tiers")
            bounds = [t.up_to for t in self.tiers]
            if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
                raise ValueError("only the last tier is unbounded (up_to null)")
            if any(a >= b for a, b in zip(bounds[:-2], bounds[1:-1])):  # type: ignore[operator]
                raise ValueError("tiers must ascend")
        return self


class PricePlan(_Model):
    """A customer's plan: flat monthly fee, priced meters, minimum commitment (EUR, net)."""

    flat_fee: Decimal = Field(default=ZERO, ge=0)
    minimum_commitment: Decimal = Field(default=ZERO, ge=0)
    components: list[Component] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_component_per_meter(self) -> "PricePlan":
        names = [c.meter for c in self.components]
        if len(names) != len(set(names)):
            raise ValueError("one component per meter")
        return self

    def component(self, meter: str) -> Component | None:
        return next((c for c in self.components if c.meter == meter), None)


def price(component: Component, quantity: Decimal) -> Decimal:
    """Unrounded net price of `quantity`; zero quantity costs nothing."""
    if quantity <= 0:
        return ZERO
    if component.model == "per_unit":
        return quantity * component.unit_price  # type: ignore[operator]
    if component.model == "package":
        packages = math.ceil(quantity / component.package_size)  # type: ignore[operator]
        return packages * component.package_price  # type: ignore[operator]
    if component.model == "volume":
        tier = next(t for t in component.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * tier.unit_price + tier.flat_fee
    total, lower = ZERO, ZERO
    for tier in component.tiers:  # graduated: each tier prices the units within it
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += (upper - lower) * tier.unit_price + tier.flat_fee
        lower = upper if tier.up_to is None else tier.up_to
    return total


def round_money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def vat_rate_on(rates: Mapping[date, Decimal], day: date) -> Decimal:
    """The Finnish VAT rate (percent) in force on `day`."""
    applicable = [d for d in rates if d <= day]
    if not applicable:
        raise ValueError("no VAT rate configured for the date")
    return rates[max(applicable)]


# ---- invoices ------------------------------------------------------------------------------

@dataclass
class MeterUsage:
    """One meter's usage of one usage period, as rows tagged with their invoice period."""

    meter: Meter
    usage_period: str
    rows: list[Mapping[str, Any]]
    unique_values: list[tuple[str, str]] = field(default_factory=list)  # (value, invoice_period)
    version_from: datetime = BEGINNING  # the plan version this usage is rated by

    def quantity_through(self, invoice_period: str, *, inclusive: bool) -> Decimal:
        def within(p: str) -> bool:
            return p <= invoice_period if inclusive else p < invoice_period
        return meter_quantity(self.meter.aggregation, [r for r in self.rows if within(r["invoice_period"])],
                              [v for v, p in self.unique_values if within(p)])


def quantity_text(quantity: Decimal) -> str:
    """A quantity without trailing zeros or exponent: 1234.50 → "1234.5", 1E+2 → "100"."""
    return format(quantity.normalize(), "f") if quantity else "0"


def _money(amount: Decimal) -> str:
    return str(round_money(amount))


@dataclass(frozen=True)
class PlanVersion:
    """A price plan from `effective_from` until the next version's (SPEC §6)."""

    effective_from: datetime
    plan: PricePlan


@dataclass(frozen=True)
class Segment:
    """The part of a period one plan version is in force: [start, end), and its share of
    the month's days (a version taking effect during a day owns that day)."""

    version: PlanVersion
    start: datetime
    end: datetime
    days: int
    month_days: int


def _local_day(moment: datetime) -> date:
    return moment.astimezone(HELSINKI).date()


def segments(versions: Sequence[PlanVersion], period: str) -> list[Segment]:
    """The plan versions in force during `period`, each with its days (Europe/Helsinki)."""
    start, end = period_start(period), period_start(next_period(period))
    month_days = (end.date() - start.date()).days
    ordered = sorted(versions, key=lambda v: v.effective_from)
    result = []
    for i, version in enumerate(ordered):
        until = ordered[i + 1].effective_from if i + 1 < len(ordered) else end
        lo, hi = max(version.effective_from, start), min(until, end)
        if lo >= hi:
            continue
        days = ((_local_day(hi) if hi < end else end.date()) - _local_day(lo)).days
        result.append(Segment(version, lo, hi, days, month_days))
    return result


def prorate(amount: Decimal, segment: Segment) -> Decimal:
    return amount * segment.days / segment.month_days


def _plan_for(versions: Sequence[PlanVersion], version_from: datetime) -> PricePlan | None:
    """The plan that rates usage kept under `version_from` (the version in force then)."""
    starts = [v.effective_from for v in sorted(versions, key=lambda v: v.effective_from)]
    found = version_in_force(starts, version_from) or (starts[0] if starts else None)
    return next((v.plan for v in versions if v.effective_from == found), None)


def plan_in_force(versions: Sequence[PlanVersion], moment: datetime) -> PricePlan | None:
    in_force = [v for v in versions if v.effective_from <= moment]
    return max(in_force, key=lambda v: v.effective_from).plan if in_force else None


def version_change_conflict(effective_from: datetime, last_invoiced_period: str | None) -> str | None:
    """Why a plan version from `effective_from` may not be written, or None: it would be in
    force during a period this customer was already invoiced for (invoices are immutable)."""
    if last_invoiced_period and effective_from < period_start(next_period(last_invoiced_period)):
        return "effective_from: a version in force during an invoiced period cannot be added or changed"
    return None


def invoice_lines(versions: Sequence[PlanVersion] | PricePlan, usage: Sequence[MeterUsage], period: str
                  ) -> list[dict[str, str]]:
    """Lines of a customer's invoice for `period`: per plan version in force in it, the flat
    fee and the top-up to the minimum prorated by days, a line per priced meter; adjustment
    lines for late usage of closed periods, each rated by the version it was used under.
    A period with one version has the lines without version fields."""
    if isinstance(versions, PricePlan):
        versions = [PlanVersion(BEGINNING, versions)]
    parts = segments(versions, period)
    split = len(parts) > 1
    lines: list[dict[str, str]] = []

    def tagged(line: dict[str, str], segment: Segment) -> dict[str, str]:
        if split:
            line |= {"version_from": segment.version.effective_from.isoformat(),
                     "days": f"{segment.days}/{segment.month_days}"}
        return line

    ordered = sorted(usage, key=lambda u: (u.usage_period, u.version_from, u.meter.name))
    starts = [p.start for p in parts]

    def segment_of(item: MeterUsage) -> Segment | None:  # the part of the month its usage was in
        found = version_in_force(starts, max(item.version_from, starts[0])) if starts else None
        return next((p for p in parts if p.start == found), None)

    for segment in parts:
        plan = segment.version.plan
        if plan.flat_fee:
            lines.append(tagged({"kind": "flat_fee", "description": "monthly fee",
                                 "amount": _money(prorate(plan.flat_fee, segment))}, segment))
        usage_total = ZERO
        for item in ordered:
            if item.usage_period != period or segment_of(item) is not segment:
                continue
            component = plan.component(item.meter.name)
            if component is None:
                continue  # metered but not priced: reported, not billed
            through = item.quantity_through(period, inclusive=True)
            amount = round_money(price(component, through))
            usage_total += amount
            lines.append(tagged({"kind": "usage", "meter": item.meter.name, "usage_period": period,
                                 "quantity": quantity_text(through), "amount": str(amount)}, segment))
        minimum = round_money(prorate(plan.minimum_commitment, segment))
        if plan.minimum_commitment and usage_total < minimum:
            lines.append(tagged({"kind": "minimum_commitment", "description": "top-up to the minimum commitment",
                                 "amount": _money(minimum - usage_total)}, segment))
    for item in ordered:
        if item.usage_period == period:
            continue
        plan = _plan_for(versions, item.version_from)
        component = plan.component(item.meter.name) if plan else None
        if component is None:
            continue
        through = item.quantity_through(period, inclusive=True)
        before = item.quantity_through(period, inclusive=False)
        amount = round_money(price(component, through) - price(component, before))
        lines.append({"kind": "adjustment", "meter": item.meter.name, "usage_period": item.usage_period,
                      "quantity": quantity_text(through - before), "amount": str(amount)})
    return lines


def invoice_totals(lines: Sequence[Mapping[str, str]], vat_percent: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(net, vat, gross): net is the sum of the rounded lines, VAT rounded once on it."""
    net = sum((Decimal(line["amount"]) for line in lines), ZERO)
    vat = round_money(net * vat_percent / 100)
    return net, vat, net + vat
