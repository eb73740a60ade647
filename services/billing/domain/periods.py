"""Billing periods (SPEC §6): calendar months in Europe/Helsinki, which one an instant falls
in, when one may be closed and which invoice a late event lands on. No I/O."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


HELSINKI = ZoneInfo("Europe/Helsinki")

# The effective-from of a customer's first plan version when none was given: before any usage.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


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
