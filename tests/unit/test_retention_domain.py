"""Retention rules without I/O: policy limits (R7), deadlines (R5–R7), disposition (R7, R8), holds."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.retention.domain import (
    FrozenClock, Hold, Policy, PolicyError, Span, active_hold_until, disposition_for, is_complete, is_overdue,
    plan_deadlines,
)
from services.retention.settings import RetentionSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy.validated(0, 365)


def test_r7_policy_longer_than_a_year_is_refused():
    with pytest.raises(PolicyError, match="RETENTION_DISPOSITION_DAYS.*R7"):
        Policy.validated(0, 366)


def test_r7_service_settings_refuse_an_unlawful_policy(monkeypatch):
    monkeypatch.setenv("RETENTION_DISPOSITION_DAYS", "400")
    with pytest.raises(ValueError, match="R7"):
        RetentionSettings()


def test_policy_defaults_grace_zero_and_a_year():
    assert RetentionSettings().policy() == Policy(0, 365)


@pytest.mark.parametrize("grace,period", [(-1, 10), (0, -1), (30, 10)])
def test_policy_rejects_nonsense(grace, period):
    with pytest.raises(PolicyError):
        Policy.validated(grace, period)


def test_r5_open_relationship_has_no_timers():
    assert plan_deadlines("active", [Span(None)], [], POLICY) == []


def test_r6_open_assignment_keeps_person_active_after_relationship_ends():
    assert plan_deadlines("ended", [Span(T0)], [Span(None)], POLICY) == []


def test_r7_deadlines_count_from_the_last_assignment_end():
    last = T0 + timedelta(days=40)
    plan = {p.action: p for p in plan_deadlines("ended", [Span(T0)], [Span(T0 + timedelta(days=3)), Span(last)],
                                                Policy.validated(7, 365))}
    assert plan["passivate"].due_at == last + timedelta(days=7)
    assert plan["dispose"].due_at == last + timedelta(days=365)
    assert plan["dispose"].basis.startswith("last_assignment_ended")


def test_relationship_end_is_the_anchor_without_assignments():
    plan = {p.action: p for p in plan_deadlines("ended", [Span(T0)], [], POLICY)}
    assert plan["dispose"].due_at == T0 + timedelta(days=365)
    assert plan["dispose"].basis.startswith("relationship_ended")


def test_passive_person_gets_only_the_disposition_timer_and_disposed_person_none():
    assert [p.action for p in plan_deadlines("passive", [Span(T0)], [], POLICY)] == ["dispose"]
    assert plan_deadlines("disposing", [Span(T0)], [], POLICY) == []


@given(st.lists(st.integers(0, 2000), min_size=1, max_size=6), st.lists(st.integers(0, 2000), max_size=6),
       st.integers(0, 365))
def test_r7_disposition_never_later_than_a_year_after_the_last_end(rel_days, asg_days, period):
    rels = [Span(T0 + timedelta(days=d)) for d in rel_days]
    asgs = [Span(T0 + timedelta(days=d)) for d in asg_days]
    last_end = max(s.ended_at for s in [*rels, *asgs])
    plan = {p.action: p for p in plan_deadlines("ended", rels, asgs, Policy.validated(0, period))}
    assert plan["dispose"].due_at == last_end + timedelta(days=period)
    assert plan["dispose"].due_at <= last_end + timedelta(days=365)


def test_r7_r8_transfer_only_with_permission_and_no_ban():
    assert disposition_for({"direct_advertising"}, set()) == "transfer_to_marketing"
    assert disposition_for(set(), set()) == "erase"
    assert disposition_for({"direct_advertising"}, {"distance_selling"}) == "erase"


def test_hold_in_force_until_expiry_unless_released():
    now = T0
    assert active_hold_until([Hold(T0 + timedelta(days=5)), Hold(T0 + timedelta(days=9))], now) == T0 + timedelta(days=9)
    assert active_hold_until([Hold(T0 - timedelta(days=1))], now) is None
    assert active_hold_until([Hold(T0 + timedelta(days=5), released_at=T0)], now) is None


def test_confirmations_complete_and_overdue():
    assert is_complete("erase", ["contacts", "consent", "billing", "retention"])
    assert not is_complete("erase", ["contacts", "consent", "billing"])
    assert is_complete("transfer_to_marketing", ["contacts", "consent"])
    assert is_overdue(T0, False, T0 + timedelta(seconds=61), 60)
    assert not is_overdue(T0, True, T0 + timedelta(seconds=61), 60)


def test_frozen_clock_moves_only_when_told():
    clock = FrozenClock(T0)
    assert clock.now() == T0
    assert clock.advance(days=366) == T0 + timedelta(days=366)
