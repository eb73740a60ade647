"""Invoice numbers and what follows from them (issue 18, SPEC §6): one gapless series per
seller for invoices, credit notes in it or in their own; the reference number and the due
date. Pure: the counter itself is in storage (a row locked in the invoice's transaction)."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from services.billing import domain, finnish


def series_of(seller_business_id: str, kind: str, credit_note_series: str) -> str:
    if kind == "credit_note" and credit_note_series == "own":
        return f"{seller_business_id}/credit_note"
    return f"{seller_business_id}/invoice"


def number_text(prefix: str, number: int) -> str:
    return f"{prefix}{number}"


def references(number: int) -> tuple[str, str]:
    """(national reference, RF creditor reference) of invoice `number`: the base is 1 and the
    number in at least three digits (a base needs three), so distinct numbers never collide."""
    national = finnish.reference_number("1" + f"{number:03d}")
    return national, finnish.rf_reference(national)


def due_date(issued_at: datetime, terms_days: int) -> date:
    return issued_at.astimezone(domain.HELSINKI).date() + timedelta(days=terms_days)


def number_gaps(numbers: list[int]) -> tuple[list[int], list[int]]:
    """(missing, duplicated) numbers of a series that should be 1..n."""
    seen: set[int] = set()
    duplicates = sorted({n for n in numbers if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    missing = sorted(set(range(1, max(numbers, default=0) + 1)) - seen)
    return missing, duplicates
