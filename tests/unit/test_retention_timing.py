"""A person's visible retention timing (issue 14, SPEC R6, R7): dates on the Helsinki calendar,
the rule and what the date counts from, holds, and when a disposition is blocked past its
deadline (a hold in force, or a command not confirmed in time). Pure: `timing.person_retention`."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from services.retention.domain import Policy, Span, plan_deadlines
from services.retention.timing import TimingFacts, person_retention

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
POLICY = Policy.validated(0, 365)
PERSON = uuid.uuid4()
TIMEOUT = 600.0


def rows(planned, *, status="pending", deferred_from=None):
    return [{"action": p.action, "status": status, "due_at": p.due_at, "deferred_from": deferred_from,
             "basis": p.basis, "anchor_at": p.anchor_at, "policy_version": POLICY.version} for p in planned]


def timing(state="ended", deadlines=(), holds=(), commands=(), open_spans=0, spans=2, now=NOW):
    facts = TimingFacts(state=state, deadlines=list(deadlines), holds=list(holds), open_commands=list(commands),
                        open_spans=open_spans, spans=spans)
    return person_retention(PERSON, facts, now, TIMEOUT)


def test_issue_14_scenario_is_due_at_once_counted_from_the_relationship_end():
    """The issue's R7 case: the last assignment ended 2025-11-24, the relationship ends today."""
    planned = plan_deadlines("ended", [Span(NOW)], [Span(datetime(2025, 11, 24, 12, tzinfo=UTC))], POLICY)
    seen = timing(deadlines=rows(planned))
    assert seen.disposition_due == date(2026, 11, 30)
    assert seen.basis == "relationship_ended 2026-11-30 + 0d"
    assert seen.rule == "r7.2" and seen.blocked is False and seen.overdue_since is None


def test_disposition_a_year_after_the_last_assignment_names_that_end_and_365_days():
    asg_end = datetime(2026, 6, 1, 9, tzinfo=UTC)
    planned = plan_deadlines("ended", [Span(datetime(2026, 5, 1, tzinfo=UTC))], [Span(asg_end)], POLICY)
    seen = timing(deadlines=rows(planned))
    assert seen.passivation_due == date(2026, 6, 1)
    assert seen.disposition_due == date(2027, 6, 1)
    assert seen.basis == "last_assignment_ended 2026-06-01 + 365d"


def test_dates_are_helsinki_calendar_days():
    """22:30 UTC on 31 December is already 1 January in Helsinki."""
    late = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)
    planned = plan_deadlines("ended", [Span(late)], [], Policy.validated(0, 30))
    seen = timing(deadlines=rows(planned), now=late)
    assert seen.disposition_due == date(2027, 1, 31)
    assert seen.basis == "relationship_ended 2027-01-01 + 30d"


def test_an_open_relationship_has_no_dates_and_says_why():
    seen = timing(state="active", open_spans=1)
    assert seen.passivation_due is None and seen.disposition_due is None
    assert "relationship or assignment lasts" in seen.basis and seen.rule == "r7.2"


def hold(expires_at, released_at=None):
    return {"hold_id": uuid.uuid4(), "reason": "tax audit 2026", "expires_at": expires_at, "released_at": released_at}


def test_a_hold_in_force_past_the_deadline_blocks_and_the_legal_date_stays_visible():
    planned = plan_deadlines("passive", [Span(NOW - timedelta(days=400))], [], POLICY)
    legal = planned[-1].due_at
    deferred = [{**r, "due_at": NOW + timedelta(days=30)} for r in rows(planned, deferred_from=legal)]
    seen = timing(state="passive", deadlines=deferred, holds=[hold(NOW + timedelta(days=30))])
    assert seen.blocked is True and seen.overdue_since == legal.date()
    assert seen.disposition_due == legal.date()  # the rule's date, not the hold's
    assert [h.reason for h in seen.holds] == ["tax audit 2026"]


def test_a_hold_before_the_deadline_is_listed_but_blocks_nothing_yet():
    planned = plan_deadlines("ended", [Span(NOW)], [], POLICY)
    seen = timing(deadlines=rows(planned), holds=[hold(NOW + timedelta(days=500))])
    assert seen.blocked is False and len(seen.holds) == 1


def test_released_or_expired_holds_are_not_shown_and_do_not_block():
    planned = plan_deadlines("ended", [Span(NOW - timedelta(days=400))], [], POLICY)
    seen = timing(deadlines=rows(planned), holds=[hold(NOW - timedelta(days=1)),
                                                  hold(NOW + timedelta(days=9), released_at=NOW)])
    assert seen.holds == [] and seen.blocked is False


def command(commanded_at, overdue_since=None, action="erase"):
    return {"command_id": uuid.uuid4(), "action": action, "deadline_at": datetime(2026, 10, 1, tzinfo=UTC),
            "commanded_at": commanded_at, "last_commanded_at": commanded_at, "overdue_since": overdue_since}


def test_a_command_the_scheduler_re_sent_stays_blocked_since_its_first_sending():
    """Issue 14: the scheduler re-sends an overdue command (its last_commanded_at moves on); that
    does not make the disposition any less blocked (found by the suite under two CPU burners,
    where a pass re-sent it between the test's steps)."""
    done = rows(plan_deadlines("passive", [Span(datetime(2025, 10, 1, tzinfo=UTC))], [], POLICY), status="done")
    re_sent = {**command(NOW - timedelta(seconds=TIMEOUT + 1)), "last_commanded_at": NOW}
    seen = timing(state="disposing", deadlines=done, commands=[re_sent])
    assert seen.blocked is True and seen.overdue_since == date(2026, 10, 1)


def test_a_disposition_command_unconfirmed_past_the_timeout_blocks_since_its_deadline():
    done = rows(plan_deadlines("passive", [Span(datetime(2025, 10, 1, tzinfo=UTC))], [], POLICY), status="done")
    seen = timing(state="disposing", deadlines=done, commands=[command(NOW - timedelta(seconds=TIMEOUT + 1))])
    assert seen.blocked is True and seen.overdue_since == date(2026, 10, 1)
    assert seen.disposition_due == date(2026, 10, 1)


def test_a_command_still_within_its_confirmation_time_is_not_blocked():
    seen = timing(state="disposing", commands=[command(NOW - timedelta(seconds=5))])
    assert seen.blocked is False and seen.overdue_since is None


def test_an_unconfirmed_passivation_is_not_a_blocked_disposition():
    seen = timing(commands=[command(NOW - timedelta(days=3), overdue_since=NOW, action="passivate")])
    assert seen.blocked is False and seen.passivation_due == date(2026, 10, 1)
