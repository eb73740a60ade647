"""The chargeable decision names its reason (SPEC §10, R12): the earlier free request within
twelve months, its id and date."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.contacts.access_report import chargeable_because, is_chargeable

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def req(days_ago: float, chargeable: bool = False) -> dict:
    return {"id": uuid.uuid4(), "created_at": NOW - timedelta(days=days_ago), "chargeable": chargeable}


def test_a_free_request_names_nothing():
    assert chargeable_because([], NOW) is None
    assert chargeable_because([req(400)], NOW) is None


def test_the_reason_is_the_earlier_free_request_not_a_later_chargeable_one():
    free, charged = req(100), req(20, chargeable=True)
    because = chargeable_because([charged, req(500), free], NOW)
    assert because == {"request_id": free["id"], "received_at": free["created_at"], "was_free": True}


@given(st.lists(st.tuples(st.integers(0, 800), st.booleans()), max_size=6))
def test_a_reason_exactly_when_chargeable_and_it_lies_within_twelve_months(spec):
    earlier = [req(d, c) for d, c in spec]
    because = chargeable_because(earlier, NOW)
    assert (because is not None) == is_chargeable([r["created_at"] for r in earlier], NOW)
    if because is not None:
        named = next(r for r in earlier if r["id"] == because["request_id"])
        assert NOW - named["created_at"] < timedelta(days=366)
        in_window_free = [r for r in earlier if not r["chargeable"] and NOW - r["created_at"] < timedelta(days=365)]
        assert because["was_free"] == bool(in_window_free)
