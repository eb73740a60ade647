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


def test_r7_disposition_is_a_year_after_the_last_assignment_end():
    last = T0 + timedelta(days=40)
    plan = {p.action: p for p in plan_deadlines("ended", [Span(T0)], [Span(T0 + timedelta(days=3)), Span(last)],
                                                Policy.validated(7, 365))}
    assert plan["passivate"].due_at == last + timedelta(days=7)
    assert plan["dispose"].due_at == last + timedelta(days=365)
    assert plan["dispose"].basis == "last_assignment_ended+365d"


def test_r7_relationship_ending_a_year_after_the_last_assignment_disposes_at_once():
    """The issue's scenario: the last assignment ended 2025-11-24, the relationship ends
    2026-12-01. The old rule counted the year from the relationship end (2027-12-01)."""
    assignment_end = datetime(2025, 11, 24, 12, tzinfo=UTC)
    relationship_end = datetime(2026, 12, 1, 12, tzinfo=UTC)
    plan = {p.action: p for p in plan_deadlines("ended", [Span(relationship_end)], [Span(assignment_end)], POLICY)}
    assert plan["dispose"].due_at == relationship_end
    assert plan["dispose"].basis.startswith("relationship_ended")
    assert "passivate" not in plan  # the disposition comes first: nothing to passivate before it


def test_r7_configured_period_never_delays_a_disposition_after_an_assignment():
    """RETENTION_DISPOSITION_DAYS sets the period of a person who never had an assignment only."""
    plan = {p.action: p for p in plan_deadlines("ended", [Span(T0)], [Span(T0)], Policy.validated(0, 30))}
    assert plan["dispose"].due_at == T0 + timedelta(days=365)


def test_r7_without_assignments_the_passivation_period_counts_from_the_relationship_end():
    plan = {p.action: p for p in plan_deadlines("ended", [Span(T0)], [], Policy.validated(0, 90))}
    assert plan["dispose"].due_at == T0 + timedelta(days=90)
    assert plan["dispose"].basis == "relationship_ended+passivation:90d"


def test_passive_person_gets_only_the_disposition_timer_and_disposed_person_none():
    assert [p.action for p in plan_deadlines("passive", [Span(T0)], [], POLICY)] == ["dispose"]
    assert plan_deadlines("disposing", [Span(T0)], [], POLICY) == []


def _r7_written_out(rel_ends: list[datetime], asg_ends: list[datetime], period_days: int) -> datetime:
    """SPEC R7 as its text reads, independently of the domain code."""
    if not asg_ends:
        return max(rel_ends) + timedelta(days=period_days)
    candidates = [max(asg_ends) + timedelta(days=365)]
    if rel_ends:
        candidates.append(max(rel_ends))
    return max(candidates)


@given(st.lists(st.integers(0, 2000), max_size=6), st.lists(st.integers(0, 2000), max_size=6),
       st.integers(0, 365), st.integers(0, 365), st.sampled_from(["active", "ended", "passive"]))
def test_r7_disposition_follows_the_rule_for_any_relationships_and_assignments(
        rel_days, asg_days, grace, period, state):
    grace = min(grace, period)
    rels = [Span(T0 + timedelta(days=d)) for d in rel_days]
    asgs = [Span(T0 + timedelta(days=d)) for d in asg_days]
    plan = {p.action: p for p in plan_deadlines(state, rels, asgs, Policy.validated(grace, period))}
    if not rels and not asgs:
        assert plan == {}
        return
    expected = _r7_written_out([s.ended_at for s in rels], [s.ended_at for s in asgs], period)
    assert plan["dispose"].due_at == expected
    if asgs:  # never later than a year after the last assignment, unless a relationship still held the data
        assert expected <= max(max(s.ended_at for s in asgs) + timedelta(days=365),
                               max((s.ended_at for s in rels), default=T0))
    if "passivate" in plan:
        assert state != "passive" and plan["passivate"].due_at < plan["dispose"].due_at


@given(st.lists(st.one_of(st.none(), st.integers(0, 2000)), min_size=1, max_size=4),
       st.lists(st.one_of(st.none(), st.integers(0, 2000)), max_size=4))
def test_r5_r6_anything_still_open_means_no_timers(rel_days, asg_days):
    rels = [Span(None if d is None else T0 + timedelta(days=d)) for d in rel_days]
    asgs = [Span(None if d is None else T0 + timedelta(days=d)) for d in asg_days]
    plan = plan_deadlines("ended", rels, asgs, POLICY)
    assert (plan == []) == any(s.ended_at is None for s in [*rels, *asgs])


def test_r7_r8_transfer_only_with_permission_and_no_ban():
    assert disposition_for({"direct_advertising"}, set()) == "transfer_to_marketing"
    assert disposition_for(set(), set()) == "erase"
    assert disposition_for({"direct_advertising"}, {"distance_selling"}) == "erase"
    # Art. 17, issue 14: a decided erasure request erases even a person with a permission
    assert disposition_for({"direct_advertising"}, set(), erasure_requested=True) == "erase"


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
