"""Billing rules without I/O (P3 of R1, SPEC §6): periods, validation, aggregation, rating."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.billing import domain
from services.billing.domain import Aggregation, Component, Meter, PricePlan, Tier

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
CALLS = Meter("api_calls", Aggregation.sum, ("region",))
GRADUATED = Component(meter="api_calls", model="graduated", tiers=[
    Tier(up_to=D(100), unit_price=D("0.10")), Tier(up_to=D(1000), unit_price=D("0.08")),
    Tier(unit_price=D("0.05"))])


def test_period_is_the_calendar_month_in_helsinki():
    # 22:30 UTC on 31 Jan is already 1 Feb in Helsinki (UTC+2)
    assert domain.period_of(datetime(2026, 1, 31, 22, 30, tzinfo=UTC)) == "2026-02"
    assert domain.period_of(datetime(2026, 1, 31, 21, 59, tzinfo=UTC)) == "2026-01"
    # summer time (UTC+3)
    assert domain.period_of(datetime(2026, 6, 30, 21, 0, tzinfo=UTC)) == "2026-07"
    assert domain.next_period("2026-12") == "2027-01"
    assert domain.period_last_day("2024-02") == date(2024, 2, 29)


def test_late_usage_goes_to_the_next_open_invoice():
    assert domain.invoice_target("2026-09", set()) == "2026-09"
    assert domain.invoice_target("2026-09", {"2026-09", "2026-10"}) == "2026-11"


@pytest.mark.parametrize("kwargs, reason", [
    (dict(meter=None), "meter: unknown meter"),
    (dict(customer_known=False), "customer_id: unknown customer"),
    (dict(quantity=D("-1")), "quantity: must not be negative"),
    (dict(quantity=D("NaN")), "quantity: must be a finite"),
    (dict(time=NOW + timedelta(days=2)), "time: too far in the future"),
    (dict(meter=Meter("users", Aggregation.unique_count, (), "user")), "dimensions.user: required"),
])
def test_invalid_usage_has_a_reason_naming_the_field(kwargs, reason):
    args = dict(customer_known=True, meter=CALLS, quantity=D("1.5"), time=NOW, dimensions={}, now=NOW,
                max_future=timedelta(days=1)) | kwargs
    assert domain.validate_usage(**args).startswith(reason)


def test_valid_usage_passes():
    assert domain.validate_usage(True, CALLS, D(0), NOW, {}, NOW, timedelta(days=1)) is None


USERS = Meter("users", Aggregation.unique_count, (), "user")
FIRST_PLAN = NOW - timedelta(days=10)


@given(st.lists(st.tuples(
    st.sampled_from(["api_calls", "users", "unknown"]), st.sampled_from([1, 2, 3]),
    st.sampled_from([D("1.5"), D(0), D("-1"), D("NaN"), D("Infinity")]),
    st.integers(min_value=-20, max_value=3), st.booleans()), max_size=30))
def test_a_batchs_reasons_are_each_events_rule_written_out(rows):
    """Issue 21: the batch check equals, event by event, `validate_usage` and the plan rule."""
    meters = {"api_calls": CALLS, "users": USERS}
    versions = {uuid.UUID(int=1): [FIRST_PLAN], uuid.UUID(int=2): []}  # 3: no plan at all
    events = [domain.UsageEvent(uuid.UUID(int=c), None, m, q, NOW + timedelta(days=d), {"user": "u"} if u else {})
              for m, c, q, d, u in rows]
    expected = []
    for e in events:
        starts = versions.get(e.customer_id)
        reason = domain.validate_usage(starts is not None, meters.get(e.meter), e.quantity, e.time, e.dimensions,
                                       NOW, timedelta(days=1))
        if reason is None and (not starts or e.time < starts[0]):
            reason = "time: before the customer's first price plan version"
        expected.append(reason)
    assert domain.usage_reasons(events, meters, versions, NOW, timedelta(days=1)) == expected


def _event(q: str, minute: int = 0, person=None, **dims):
    return domain.UsageEvent(uuid.UUID(int=1), person, "api_calls", D(q), NOW + timedelta(minutes=minute), dims)


def test_fold_aggregates_per_customer_meter_period_and_chosen_dimensions():
    person = uuid.uuid4()
    october = datetime(2026, 10, 31, 21, 30, tzinfo=UTC)  # 23:30 in Helsinki: still October (R1 P3 periods)
    events = [_event("1.5", 0, person, region="fi", host="a"), _event("2", 1, person, region="fi", host="b"),
              _event("7", 2, region="se"),
              domain.UsageEvent(uuid.UUID(int=1), None, "api_calls", D(3), october, {"region": "fi"})]
    folded = domain.fold_usage(events, {"api_calls": CALLS})
    period = domain.period_of(NOW)
    fi = folded.aggregates[(uuid.UUID(int=1), "api_calls", period, '{"region":"fi"}', domain.BEGINNING)]
    assert (fi.quantity_sum, fi.event_count, fi.quantity_max, fi.latest_quantity) == (D("3.5"), 2, D(2), D(2))
    late = folded.aggregates[(uuid.UUID(int=1), "api_calls", "2026-10", '{"region":"fi"}', domain.BEGINNING)]
    assert late.quantity_sum == D(3)
    assert folded.persons[(uuid.UUID(int=1), person, "api_calls", period)] == [2, D("3.5")]
    assert folded.periods == {period, "2026-10"}


def test_fold_orders_rows_by_key_so_concurrent_batches_lock_in_one_order():
    events = [domain.UsageEvent(uuid.UUID(int=n), uuid.UUID(int=100 - n), "api_calls", D(1), NOW, {"region": r})
              for n in (9, 3, 7, 1) for r in ("se", "fi")]
    folded = domain.fold_usage(events, {"api_calls": CALLS})
    assert list(folded.aggregates) == sorted(folded.aggregates)
    assert list(folded.persons) == sorted(folded.persons)


@pytest.mark.parametrize("aggregation, expected", [
    (Aggregation.sum, D(9)), (Aggregation.count, D(3)), (Aggregation.max, D(5)), (Aggregation.latest, D(1)),
])
def test_meter_quantity_by_aggregation(aggregation, expected):
    t = NOW
    rows = [dict(quantity_sum=D(3), event_count=1, quantity_max=D(3), latest_quantity=D(3), latest_at=t),
            dict(quantity_sum=D(6), event_count=2, quantity_max=D(5), latest_quantity=D(1), latest_at=t + timedelta(1))]
    assert domain.meter_quantity(aggregation, rows) == expected


def test_unique_count_counts_distinct_values():
    assert domain.meter_quantity(Aggregation.unique_count, [], ["a", "b", "a"]) == 2


def test_graduated_tiers_priced_by_hand():
    # 100 × 0.10 + 900 × 0.08 + 234.5 × 0.05 = 10 + 72 + 11.725
    assert domain.price(GRADUATED, D("1234.5")) == D("93.725")
    assert domain.round_money(domain.price(GRADUATED, D("1234.5"))) == D("93.73")
    assert domain.price(GRADUATED, D(100)) == D("10.00")
    assert domain.price(GRADUATED, D(0)) == 0


def test_volume_package_and_per_unit():
    volume = Component(meter="m", model="volume", tiers=[Tier(up_to=D(10), unit_price=D(2)),
                                                         Tier(unit_price=D(1), flat_fee=D(5))])
    assert domain.price(volume, D(10)) == D(20)
    assert domain.price(volume, D(11)) == D(16)  # all units at the second tier's price, plus its fee
    package = Component(meter="m", model="package", package_size=D(100), package_price=D("9.90"))
    assert domain.price(package, D(101)) == D("19.80")
    per_unit = Component(meter="m", model="per_unit", unit_price=D("0.333"))
    assert domain.round_money(domain.price(per_unit, D(3))) == D("1.00")


@given(st.decimals(min_value=0, max_value=10**6, places=3), st.decimals(min_value=0, max_value=10**6, places=3))
def test_graduated_price_is_monotone_and_tier_continuous(a, b):
    lo, hi = sorted((a, b))
    assert domain.price(GRADUATED, lo) <= domain.price(GRADUATED, hi)


def test_plan_validation_rejects_incomplete_components():
    with pytest.raises(ValidationError):
        Component(meter="m", model="per_unit")
    with pytest.raises(ValidationError):
        Component(meter="m", model="graduated", tiers=[Tier(unit_price=D(1)), Tier(up_to=D(5))])
    with pytest.raises(ValidationError):
        PricePlan(components=[GRADUATED, GRADUATED])


def _usage(rows, period="2026-10"):
    return domain.MeterUsage(CALLS, period, rows)


def _row(q, invoice_period):
    return dict(quantity_sum=D(q), event_count=1, quantity_max=D(q), latest_quantity=D(q), latest_at=NOW,
                invoice_period=invoice_period)


def test_invoice_lines_flat_usage_adjustment_and_minimum():
    plan = PricePlan(flat_fee=D("15"), minimum_commitment=D("50"), components=[GRADUATED])
    usage = [_usage([_row("150", "2026-11")], "2026-11"),
             _usage([_row("90", "2026-10"), _row("20", "2026-11")], "2026-10")]
    lines = domain.invoice_lines(plan, usage, "2026-11")
    by_kind = {line["kind"]: line for line in lines}
    assert by_kind["usage"]["amount"] == "14.00"  # 100 × 0.10 + 50 × 0.08
    # late 20 on top of 90 already billed: price(110) − price(90) = 10.80 − 9.00
    assert by_kind["adjustment"] | {} == {"kind": "adjustment", "meter": "api_calls", "usage_period": "2026-10",
                                          "quantity": "20", "amount": "1.80"}
    assert by_kind["minimum_commitment"]["amount"] == "36.00"  # 50 − 14 (usage only)
    net, vat, gross = domain.invoice_totals(lines, D("25.5"))
    assert (net, vat, gross) == (D("66.80"), D("17.03"), D("83.83"))  # 66.80 × 0.255 = 17.034


def test_vat_rate_by_date():
    rates = {date(2013, 1, 1): D(24), date(2024, 9, 1): D("25.5")}
    assert domain.vat_rate_on(rates, date(2024, 8, 31)) == D(24)
    assert domain.vat_rate_on(rates, date(2024, 9, 30)) == D("25.5")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_cached_period_matches_the_helsinki_calendar(moment):
    local = moment.astimezone(domain.HELSINKI)
    assert domain.period_of(moment) == f"{local.year:04d}-{local.month:02d}"


def test_scheduled_close_waits_for_the_grace_after_month_end():
    grace = timedelta(hours=72)
    # 1 Dec 00:00 Helsinki is 30 Nov 22:00 UTC; three days later November is due
    assert domain.period_due_for_close(datetime(2026, 12, 3, 21, 59, tzinfo=UTC), grace) is None
    assert domain.period_due_for_close(datetime(2026, 12, 3, 22, 0, tzinfo=UTC), grace) == "2026-11"
    assert domain.period_due_for_close(datetime(2027, 1, 20, tzinfo=UTC), grace) == "2026-12"


def test_dimension_key_follows_a_redefined_meter_dimensions():
    """Issue 21: a meter whose dimensions are redefined keys usage by the new names; the cache
    used to answer with the old names for the same values."""
    before = Meter("cpu-hours", Aggregation.sum, dimensions=("region",))
    after = Meter("cpu-hours", Aggregation.sum, dimensions=("zone",))
    assert domain.dimension_key(before, {"region": "fi-1", "zone": "fi-1"}) == '{"region":"fi-1"}'
    assert domain.dimension_key(after, {"region": "fi-1", "zone": "fi-1"}) == '{"zone":"fi-1"}'
@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(cell):
    """Issue 16: formula injection in the usage CSV."""
    assert domain.csv_cell(cell) == "'" + cell
    assert domain.csv_cell("fi") == "fi" and domain.csv_cell(3) == "3"
