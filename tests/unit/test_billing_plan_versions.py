"""Plan versions without I/O (issue 18, SPEC §6): each event rated by the version in force
at its time (Europe/Helsinki), a change mid-month splits the month, fees prorated by days."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

from services.billing import domain
from services.billing.domain import Aggregation, Component, Meter, PlanVersion, PricePlan

CALLS = Meter("api_calls", Aggregation.sum)
CUSTOMER = uuid.UUID(int=7)
MID_MARCH = datetime(2025, 3, 15, tzinfo=domain.HELSINKI)  # 14 + 17 days of March's 31
OLD = PricePlan(flat_fee=D("31"), minimum_commitment=D("62"),
                components=[Component(meter="api_calls", model="per_unit", unit_price=D("0.1234"))])
NEW = PricePlan(flat_fee=D("62"), components=[Component(meter="api_calls", model="per_unit", unit_price=D("0.3333"))])
VERSIONS = [PlanVersion(domain.BEGINNING, OLD), PlanVersion(MID_MARCH, NEW)]


def _usage(folded: domain.FoldedUsage) -> list[domain.MeterUsage]:
    return [domain.MeterUsage(CALLS, period, [dict(quantity_sum=a.quantity_sum, event_count=a.event_count,
                                                  quantity_max=a.quantity_max, latest_quantity=a.latest_quantity,
                                                  latest_at=a.latest_at, invoice_period=period)],
                              version_from=version)
            for (_, _, period, _, version), a in folded.aggregates.items()]


def test_version_in_force_is_the_latest_started():
    starts = (domain.BEGINNING, MID_MARCH)
    assert domain.version_in_force(starts, datetime(2025, 3, 14, 21, 59, tzinfo=UTC)) == domain.BEGINNING
    assert domain.version_in_force(starts, datetime(2025, 3, 14, 22, 0, tzinfo=UTC)) == MID_MARCH  # 00:00 Helsinki
    assert domain.version_in_force((MID_MARCH,), datetime(2025, 3, 1, tzinfo=UTC)) is None


def test_price_change_on_the_15th_prices_each_half_by_its_own_version_to_the_cent():
    """SPEC §6: 100 calls before the 15th at the old price, 40 after it at the new one."""
    events = [domain.UsageEvent(CUSTOMER, None, "api_calls", D(50), datetime(2025, 3, day, 12, tzinfo=UTC), {})
              for day in (3, 14)]
    events += [domain.UsageEvent(CUSTOMER, None, "api_calls", D(20), datetime(2025, 3, day, 12, tzinfo=UTC), {})
               for day in (15, 31)]  # the 31st is after the DST change of 30 March
    folded = domain.fold_usage(events, {"api_calls": CALLS}, {CUSTOMER: (domain.BEGINNING, MID_MARCH)})
    lines = domain.invoice_lines(VERSIONS, _usage(folded), "2025-03")
    got = [(line["kind"], line["days"], line["amount"]) for line in lines]
    assert got == [
        ("flat_fee", "14/31", "14.00"),            # 31 × 14/31
        ("usage", "14/31", "12.34"),               # 100 × 0.1234
        ("minimum_commitment", "14/31", "15.66"),  # 62 × 14/31 = 28.00 − 12.34
        ("flat_fee", "17/31", "34.00"),            # 62 × 17/31
        ("usage", "17/31", "13.33"),               # 40 × 0.3333 = 13.332
    ]
    assert domain.invoice_totals(lines, D("25.5")) == (D("89.33"), D("22.78"), D("112.11"))  # 89.33 × 0.255 = 22.779


def test_one_version_in_the_month_keeps_the_unsplit_lines():
    lines = domain.invoice_lines([PlanVersion(domain.BEGINNING, OLD)], [], "2025-03")
    assert lines == [{"kind": "flat_fee", "description": "monthly fee", "amount": "31.00"},
                     {"kind": "minimum_commitment", "description": "top-up to the minimum commitment",
                      "amount": "62.00"}]


def test_a_version_in_an_invoiced_period_is_a_conflict():
    assert domain.version_change_conflict(datetime(2025, 3, 31, 20, 59, tzinfo=UTC), "2025-03")
    assert domain.version_change_conflict(datetime(2025, 3, 31, 21, 0, tzinfo=UTC), "2025-03") is None  # April
    assert domain.version_change_conflict(MID_MARCH, None) is None
