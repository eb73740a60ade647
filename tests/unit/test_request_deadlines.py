"""Request deadlines (SPEC §10, GDPR Art. 12(3)) against the rule stated independently here:
one calendar month in Europe/Helsinki, the same day next month or that month's last day,
extended by at most two further months with a reason, moved by the days identity was unverified."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contacts.deadlines import Deadline, add_months, check_extension, local_date, pause_days
from shared.errors import InvalidInput


def stated_rule(received: date, months: int) -> date:
    """The rule as a person would apply it: step to the month `months` later, then take the
    same day, going back a day at a time while the month has no such day."""
    year, month = received.year, received.month
    for _ in range(months):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    day = received.day
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


days = st.dates(min_value=date(1990, 1, 1), max_value=date(2200, 12, 31))


def test_received_31_january_is_due_28_february_or_29_in_a_leap_year():
    """SPEC §10: the month's last day when it has no such day."""
    assert Deadline(date(2026, 1, 31)).due_date == date(2026, 2, 28)
    assert Deadline(date(2028, 1, 31)).due_date == date(2028, 2, 29)
    assert Deadline(date(2026, 3, 31)).due_date == date(2026, 4, 30)
    assert Deadline(date(2026, 12, 15)).due_date == date(2027, 1, 15)


@given(days)
def test_due_date_is_one_calendar_month_by_the_stated_rule(received):
    """SPEC §10 for any day of receipt."""
    assert Deadline(received).due_date == stated_rule(received, 1)
    assert Deadline(received).extended_until is None


@given(days, st.integers(min_value=-2400, max_value=2400))
def test_add_months_matches_the_stated_rule_forward(received, months):
    if months >= 0:
        assert add_months(received, months) == stated_rule(received, months)
    else:  # backwards: landing on the same day or the month's last day, never in a further month
        back = add_months(received, months)
        assert (back.year * 12 + back.month) - (received.year * 12 + received.month) == months
        assert back.day == received.day or (back.day < received.day and (back + timedelta(days=1)).day == 1)


@given(days, st.integers(min_value=1, max_value=2), st.integers(min_value=0, max_value=400))
def test_extension_and_pause_move_the_deadline_by_the_stated_rule(received, months, paused):
    """An extension counts further months from receipt; the pause's days are added after."""
    deadline = Deadline(received, paused).extended(months, "many services hold the data")
    assert deadline.due_date == stated_rule(received, 1) + timedelta(days=paused)
    assert deadline.extended_until == stated_rule(received, 1 + months) + timedelta(days=paused)
    assert deadline.answer_by == deadline.extended_until > deadline.due_date


@given(days, st.integers(min_value=0, max_value=40))
def test_overdue_only_after_the_last_day(received, paused):
    deadline = Deadline(received, paused)
    assert not deadline.overdue(deadline.due_date)
    assert deadline.overdue(deadline.due_date + timedelta(days=1))
    assert not deadline.overdue(received)


def test_a_three_day_identity_pause_moves_the_due_date_three_days():
    """SPEC §10: the clock pauses while identity is unverified."""
    start = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    paused = pause_days([(start, start + timedelta(days=3))], now=start + timedelta(days=10))
    assert paused == 3
    assert Deadline(date(2026, 3, 10), paused).due_date == date(2026, 4, 13)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=5))
def test_pause_days_count_each_helsinki_day_once(origin, spans):
    """Overlapping pauses count a day once; the count is the distinct Helsinki days covered."""
    pauses = [(origin + timedelta(hours=a * 7), origin + timedelta(hours=(a + b) * 7)) for a, b in spans]
    covered = set()
    for started, ended in pauses:
        d = local_date(started)
        while d < local_date(ended):
            covered.add(d)
            d += timedelta(days=1)
    assert pause_days(pauses, now=origin) == len(covered)


def test_an_open_pause_counts_up_to_now():
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert pause_days([(start, None)], now=start + timedelta(days=2, hours=1)) == 2


def test_receipt_day_is_the_helsinki_day():
    """23:30 UTC on 31 January is already 1 February in Helsinki: due 1 March."""
    received = local_date(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
    assert received == date(2026, 2, 1)
    assert Deadline(received).due_date == date(2026, 3, 1)
    with pytest.raises(ValueError):
        local_date(datetime(2026, 1, 31, 23, 30))


@pytest.mark.parametrize("months, reason, bad", [
    (3, "reason", {"months"}), (0, "reason", {"months"}), (1, "", {"reason"}), (1, "   ", {"reason"}),
    (1, None, {"reason"}), (3, None, {"months", "reason"}), (True, "r", {"months"}), ("2", "r", {"months"})])
def test_an_unlawful_extension_is_422_naming_each_bad_field(months, reason, bad):
    """Art. 12(3): at most two further months, and a reason told to the person."""
    with pytest.raises(InvalidInput) as caught:
        check_extension(0, months, reason)
    assert set(caught.value.fields) == bad


def test_an_extension_told_cannot_be_shortened_but_can_be_lengthened_to_two():
    deadline = Deadline(date(2026, 1, 31)).extended(1, "volume")
    assert deadline.extended_until == date(2026, 3, 31)
    assert deadline.extended(2, "volume").extended_until == date(2026, 4, 30)
    with pytest.raises(InvalidInput) as caught:
        deadline.extended(2, "x").extended(1, "x")
    assert set(caught.value.fields) == {"months"}
