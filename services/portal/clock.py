"""A data-subject request's clock as the work queues show it (SPEC §10): due one calendar
month after receipt in Europe/Helsinki (same day next month, or that month's last day)."""
from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

HELSINKI = ZoneInfo("Europe/Helsinki")


def due_date(received: datetime) -> date:
    local = received.astimezone(HELSINKI).date()
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return date(year, month, min(local.day, calendar.monthrange(year, month)[1]))


def days_left(received: datetime, now: datetime) -> int:
    """Negative once overdue."""
    return (due_date(received) - now.astimezone(HELSINKI).date()).days


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def end_of_day(day: date) -> datetime:
    """A hold "until a date" lasts to that day's end in Helsinki."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=HELSINKI)
