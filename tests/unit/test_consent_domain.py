"""Pure consent rules: the check decision and ban lifting (R8, R13). Normalising and hashing
contact points is the privacy kernel's (tests/unit/test_privacy_*.py)."""
from __future__ import annotations

from hypothesis import given, strategies as st

from services.consent.domain import Reason, decide, may_lift_ban
from shared.web.auth import Role

flags = st.booleans()


@given(erased=flags, banned=flags, suppressed=flags, granted=flags)
def test_r13_a_ban_always_wins_over_a_permission(erased, banned, suppressed, granted):
    outcome = decide(erased=erased, banned=banned, suppressed=suppressed, granted=granted)
    assert outcome.allowed == (not (erased or banned or suppressed))
    if banned and not erased:
        assert outcome.reason is Reason.banned


def test_r8_reasons_in_order_of_precedence():
    assert decide(erased=True, banned=True).reason is Reason.erased
    assert decide(suppressed=True, granted=True).reason is Reason.suppression_list
    assert decide(granted=True).reason is Reason.granted
    assert decide().reason is Reason.no_ban and decide().allowed


def test_r13_only_the_person_with_evidence_lifts_a_ban():
    assert may_lift_ban(role=Role.subject, actor_is_person=True, method="web_form", notice_version="2024-01")
    assert not may_lift_ban(role=Role.subject, actor_is_person=True, method="web_form", notice_version=None)
    assert not may_lift_ban(role=Role.subject, actor_is_person=False, method="web_form", notice_version="v1")
    for role in (Role.register_owner, Role.register_user, Role.marketing, Role.service):
        assert not may_lift_ban(role=role, actor_is_person=True, method="phone", notice_version="v1")
