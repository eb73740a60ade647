"""When a data-subject request must be answered (GDPR Art. 12(3), SPEC §10). Pure: no I/O.

A request is answered within one calendar month of its receipt, counted on the calendar of
Europe/Helsinki: the same day of the next month, or that month's last day when it has no such
day (received 31 January, due 28 February, or 29 in a leap year). The controller may extend
the time by at most two further months, with a reason told to the person. While the person's
identity is unverified the clock does not run: the due date moves by the days of the pause.

Errors are `InvalidInput`s naming the field and the rule, never a value.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput

HELSINKI = ZoneInfo("Europe/Helsinki")
ANSWER_MONTHS = 1  # Art. 12(3): "within one month of receipt"
MAX_EXTENSION_MONTHS = 2  # "... by two further months where necessary"
KINDS = ("access", "rectification", "objection", "erasure")


def local_date(moment: datetime) -> date:
    """The Helsinki calendar day of an aware instant (a request at 23:30 UTC on 31 Jan is 1 Feb)."""
    if moment.tzinfo is None:
        raise ValueError("moment must carry a time zone")
    return moment.astimezone(HELSINKI).date()


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it has no such day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def pause_days(pauses: list[tuple[datetime, datetime | None]], now: datetime) -> int:
    """Calendar days (Helsinki) the clock stood still; an open pause counts up to `now`.

    A pause started and ended on the same day costs nothing; overlapping pauses count once."""
    days: set[date] = set()
    for started, ended in pauses:
        first, last = local_date(started), local_date(ended or now)
        days.update(first + timedelta(days=i) for i in range((last - first).days))
    return len(days)


@dataclass(frozen=True)
class Deadline:
    """What a request's due date is made of; every field is stored, so the date can be explained."""

    received_on: date
    paused_days: int = 0
    extension_months: int = 0

    @property
    def due_date(self) -> date:
        """One month from receipt, moved by the pause: the date without any extension."""
        return add_months(self.received_on, ANSWER_MONTHS) + timedelta(days=self.paused_days)

    @property
    def extended_until(self) -> date | None:
        if not self.extension_months:
            return None
        return add_months(self.received_on, ANSWER_MONTHS + self.extension_months) + timedelta(days=self.paused_days)

    @property
    def answer_by(self) -> date:
        """The last day the answer is on time."""
        return self.extended_until or self.due_date

    def overdue(self, today: date) -> bool:
        return today > self.answer_by

    def extended(self, months: int, reason: str | None) -> Deadline:
        """The deadline with `months` of extension in total (1 or 2), given for `reason`."""
        check_extension(self.extension_months, months, reason)
        return Deadline(self.received_on, self.paused_days, months)

    def paused(self, days: int) -> Deadline:
        return Deadline(self.received_on, self.paused_days + days, self.extension_months)


def check_extension(current_months: int, months: object, reason: str | None) -> None:
    """422 naming each bad field: an extension is 1-2 months in total, never shorter than one
    already told to the person, and always has a reason."""
    fields: dict[str, str] = {}
    if not isinstance(months, int) or isinstance(months, bool) or not 1 <= months <= MAX_EXTENSION_MONTHS:
        fields["months"] = f"the extension in total is 1 to {MAX_EXTENSION_MONTHS} months (Art. 12(3))"
    elif months < current_months:
        fields["months"] = f"already extended by {current_months} months: an extension told cannot be shortened"
    if reason is None or not reason.strip():
        fields["reason"] = "required: the person is told why the answer takes longer (Art. 12(3))"
    if fields:
        raise InvalidInput("the extension is not lawful: " + "; ".join(f"{k}: {v}" for k, v in fields.items()),
                           fields=fields)
