"""Billing rules as functions of values (P3, SPEC §6): periods, usage validation and
aggregation, rating with price plans, invoice lines, VAT. No I/O here.

Money is Decimal throughout and rounded once per invoice line (to the cent, half up);
VAT is computed on the invoice's net total, once.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Iterable, Literal, Mapping, Sequence
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

HELSINKI = ZoneInfo("Europe/Helsinki")
CENT = Decimal("0.01")
ZERO = Decimal(0)


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

    aggregates: dict[tuple, Aggregate] = field(default_factory=dict)  # (customer, meter, period, dims)
    persons: dict[tuple, list] = field(default_factory=dict)  # (customer, person, meter, period) -> [count, sum]
    unique_values: list[tuple] = field(default_factory=list)  # (customer, meter, period, dims, value)

    @property
    def periods(self) -> set[str]:
        return {key[2] for key in self.aggregates}


def fold_usage(events: Iterable[Any], meters: Mapping[str, Meter]) -> FoldedUsage:
    """Aggregate usage events into rows to upsert (pure: no I/O, no clock)."""
    aggregates: dict[tuple, Aggregate] = {}
    persons: dict[tuple, list] = {}
    uniques: set[tuple] = set()
    for event in events:
        meter = meters[event.meter]
        dims = dimension_key(meter, event.dimensions)
        period = period_of(event.time)
        key = (event.customer_id, meter.name, period, dims)
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
            uniques.add((event.customer_id, meter.name, period, dims, event.dimensions[meter.unique_dimension]))
    # UUIDs compare by their integer; sorting on it keeps the comparisons in C.
    return FoldedUsage(
        aggregates=dict(sorted(aggregates.items(), key=lambda item: (item[0][0].int, *item[0][1:]))),
        persons=dict(sorted(persons.items(), key=lambda item: (item[0][0].int, item[0][1].int, *item[0][2:]))),
        unique_values=sorted(uniques, key=lambda k: (k[0].int, *k[1:])))


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


def invoice_lines(plan: PricePlan, usage: Sequence[MeterUsage], period: str) -> list[dict[str, str]]:
    """Lines of a customer's invoice for `period`: the flat fee, a line per priced meter,
    adjustment lines for late usage of closed periods, and a top-up to the minimum."""
    lines: list[dict[str, str]] = []
    if plan.flat_fee:
        lines.append({"kind": "flat_fee", "description": "monthly fee", "amount": _money(plan.flat_fee)})
    usage_total = ZERO
    for item in sorted(usage, key=lambda u: (u.usage_period, u.meter.name)):
        component = plan.component(item.meter.name)
        if component is None:
            continue  # metered but not priced: reported, not billed
        through = item.quantity_through(period, inclusive=True)
        if item.usage_period == period:
            amount = round_money(price(component, through))
            usage_total += amount
            lines.append({"kind": "usage", "meter": item.meter.name, "usage_period": period,
                          "quantity": quantity_text(through), "amount": str(amount)})
            continue
        before = item.quantity_through(period, inclusive=False)
        amount = round_money(price(component, through) - price(component, before))
        lines.append({"kind": "adjustment", "meter": item.meter.name, "usage_period": item.usage_period,
                      "quantity": quantity_text(through - before), "amount": str(amount)})
    if plan.minimum_commitment and usage_total < plan.minimum_commitment:
        lines.append({"kind": "minimum_commitment", "description": "top-up to the minimum commitment",
                      "amount": _money(plan.minimum_commitment - usage_total)})
    return lines


def invoice_totals(lines: Sequence[Mapping[str, str]], vat_percent: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(net, vat, gross): net is the sum of the rounded lines, VAT rounded once on it."""
    net = sum((Decimal(line["amount"]) for line in lines), ZERO)
    vat = round_money(net * vat_percent / 100)
    return net, vat, net + vat
