"""Invoice lines and totals (SPEC §6): usage and fixed fees of a period, prorated over the
plan versions in force, VAT computed once on the net total. No I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping, Sequence

from services.billing.domain.periods import BEGINNING, HELSINKI, next_period, period_start
from services.billing.domain.pricing import PricePlan, price, round_money
from services.billing.domain.usage import ZERO, Meter, meter_quantity, version_in_force


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
    ordered = sorted(usage, key=lambda u: (u.usage_period, u.version_from, u.meter.name))
    starts = [p.start for p in parts]

    def segment_of(item: MeterUsage) -> Segment | None:  # the part of the month its usage was in
        found = version_in_force(starts, max(item.version_from, starts[0])) if starts else None
        return next((p for p in parts if p.start == found), None)

    lines: list[dict[str, str]] = []
    for segment in parts:
        in_segment = [u for u in ordered if u.usage_period == period and segment_of(u) is segment]
        segment_lines = _segment_lines(segment, in_segment, period)
        if len(parts) > 1:
            for line in segment_lines:
                line |= {"version_from": segment.version.effective_from.isoformat(),
                         "days": f"{segment.days}/{segment.month_days}"}
        lines += segment_lines
    return lines + _adjustment_lines(versions, [u for u in ordered if u.usage_period != period], period)


def _segment_lines(segment: Segment, usage: Sequence[MeterUsage], period: str) -> list[dict[str, str]]:
    """The flat fee, the usage lines and the top-up to the minimum of one version's part of the month."""
    plan = segment.version.plan
    lines: list[dict[str, str]] = []
    if plan.flat_fee:
        lines.append({"kind": "flat_fee", "description": "monthly fee", "amount": _money(prorate(plan.flat_fee, segment))})
    usage_total = ZERO
    for item in usage:
        component = plan.component(item.meter.name)
        if component is None:
            continue  # metered but not priced: reported, not billed
        through = item.quantity_through(period, inclusive=True)
        amount = round_money(price(component, through))
        usage_total += amount
        lines.append({"kind": "usage", "meter": item.meter.name, "usage_period": period,
                      "quantity": quantity_text(through), "amount": str(amount)})
    minimum = round_money(prorate(plan.minimum_commitment, segment))
    if plan.minimum_commitment and usage_total < minimum:
        lines.append({"kind": "minimum_commitment", "description": "top-up to the minimum commitment",
                      "amount": _money(minimum - usage_total)})
    return lines


def _adjustment_lines(versions: Sequence[PlanVersion], late: Sequence[MeterUsage], period: str
                      ) -> list[dict[str, str]]:
    """Late usage of closed periods, each rated by the version it was used under: the price
    of the quantity through this period less the price already billed before it."""
    lines = []
    for item in late:
        item_plan = _plan_for(versions, item.version_from)
        component = item_plan.component(item.meter.name) if item_plan else None
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
