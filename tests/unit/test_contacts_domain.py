"""Pure rules of the contacts service: identifiers (R3), lifecycle (SPEC §3, R5-R7),
access (R6, R10), lockout (R11) and marketing eligibility (R13)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, strategies as st

from services.contacts import domain
from services.contacts.domain import CommandOutcome, State
from shared.web.auth import Role
from shared.messaging.events import Purpose

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# ---- R3: y-tunnus, phones, emails -------------------------------------------------------

def test_r3_seed_business_id_validates():
    assert domain.normalise_business_id("2192407-7") == "2192407-7"
    assert domain.normalise_business_id(" 2192407-7 ") == "2192407-7"


@pytest.mark.parametrize("bad", ["2192407-8", "2192407", "219240-77", "abcdefg-1", "", "12345678-9"])
def test_r3_invalid_business_id_rejected_without_echoing_it(bad):
    with pytest.raises(ValueError) as err:
        domain.normalise_business_id(bad)
    assert bad.strip() == "" or bad not in str(err.value)


def test_r3_six_digit_business_id_gets_leading_zero():
    check = domain.business_id_check_digit("0737546")
    assert check is not None
    assert domain.normalise_business_id(f"737546-{check}") == f"0737546-{check}"


@given(st.text(alphabet="0123456789", min_size=7, max_size=7))
def test_r3_exactly_one_check_digit_is_valid_or_none(digits):
    valid = [d for d in range(10) if _ok(f"{digits}-{d}")]
    expected = domain.business_id_check_digit(digits)
    assert valid == ([] if expected is None else [expected])


def _ok(value: str) -> bool:
    try:
        domain.normalise_business_id(value)
        return True
    except ValueError:
        return False


def test_r3_seed_phone_normalises_to_e164():
    assert domain.normalise_phone("020 74 66 010") == "+358207466010"
    assert domain.normalise_phone("+358 40 123 4567") == "+358401234567"


@pytest.mark.parametrize("bad", ["123", "not a phone", "+358 0"])
def test_r3_invalid_phone_rejected(bad):
    with pytest.raises(ValueError):
        domain.normalise_phone(bad)


def test_r3_email_lower_cased_and_checked():
    assert domain.normalise_email("  Matti.Meikalainen@Example.FI ") == "matti.meikalainen@example.fi"
    for bad in ("no-at-sign", "a@b", "two@@example.fi", "sp ace@example.fi"):
        with pytest.raises(ValueError):
            domain.normalise_email(bad)


# ---- lifecycle (SPEC §3) ----------------------------------------------------------------

def test_prospect_becomes_active_with_customer_relationship_or_assignment_only():
    assert domain.on_connection_started(State.prospect, "prospect") is State.prospect
    assert domain.on_connection_started(State.prospect, "customer") is State.active
    assert domain.on_connection_started(State.prospect, "assignment") is State.active


@pytest.mark.parametrize("before", [State.ended, State.passive])
def test_reactivation_of_ended_or_passive_person(before):
    after = domain.on_connection_started(before, "prospect")
    assert after is State.active
    assert domain.is_reactivation(before, after)
    assert not domain.is_reactivation(State.prospect, State.active)


def test_r5_connection_ends_only_with_the_last_one():
    assert domain.on_connection_ended(State.active, 1) is State.active
    assert domain.on_connection_ended(State.active, 0) is State.ended
    assert domain.on_connection_ended(State.passive, 0) is State.passive


def test_r6_passivation_only_after_the_end():
    assert domain.passivation_outcome(State.ended) is CommandOutcome.apply
    assert domain.passivation_outcome(State.passive) is CommandOutcome.confirm_only
    assert domain.passivation_outcome(State.active) is CommandOutcome.stale


@pytest.mark.parametrize("state,action,outcome", [
    (State.passive, "erase", CommandOutcome.apply),
    (State.ended, "transfer_to_marketing", CommandOutcome.apply),
    (State.erased, "erase", CommandOutcome.confirm_only),
    (State.marketing, "transfer_to_marketing", CommandOutcome.confirm_only),
    (State.marketing, "erase", CommandOutcome.apply),
    (State.active, "erase", CommandOutcome.stale),
    (State.prospect, "transfer_to_marketing", CommandOutcome.stale),
])
def test_r7_disposition_outcomes(state, action, outcome):
    assert domain.disposition_outcome(state, action) is outcome


@pytest.mark.parametrize("state", [State.prospect, State.active])
def test_art17_a_decided_erasure_request_erases_even_an_active_person(state):
    """Issue 14: retention's erasure command after an `erase` decision is not stale; a transfer still is."""
    assert domain.disposition_outcome(state, "erase", erasure_decided=True) is CommandOutcome.apply
    assert domain.disposition_outcome(state, "transfer_to_marketing", erasure_decided=True) is CommandOutcome.stale


# ---- access (R6, R10) -------------------------------------------------------------------

def test_r6_only_register_owner_reads_passive():
    assert domain.staff_may_read(Role.register_owner, State.passive)
    assert not domain.staff_may_read(Role.register_user, State.passive)
    assert domain.staff_may_read(Role.register_user, State.active)
    assert not domain.staff_may_read(Role.marketing, State.active)


# ---- lockout (R11) ----------------------------------------------------------------------

def test_r11_fifth_failure_locks():
    failed, until = 0, None
    for _ in range(domain.MAX_FAILED_LOGINS - 1):
        failed, until = domain.after_failed_login(failed, NOW)
        assert until is None
    failed, until = domain.after_failed_login(failed, NOW)
    assert until == NOW + domain.FIRST_LOCKOUT
    assert domain.is_locked(until, NOW)
    assert not domain.is_locked(until, until)


# ---- marketing (R13) ----------------------------------------------------------------------

def test_r13_ban_excludes_per_purpose_and_any_ban_excludes_without_purpose():
    p1 = ["customer_relationship"]
    assert domain.may_market(State.active, p1, set(), None)
    assert not domain.may_market(State.active, p1, {"direct_advertising"}, None)
    assert not domain.may_market(State.active, p1, {"direct_advertising"}, Purpose.direct_advertising)
    assert domain.may_market(State.active, p1, {"direct_advertising"}, Purpose.distance_selling)


def test_r6_r7_passive_and_non_p1_persons_not_marketed():
    assert not domain.may_market(State.passive, ["customer_relationship"], set(), None)
    assert not domain.may_market(State.active, ["assignments"], set(), None)
    assert domain.may_market(State.marketing, ["assignments"], set(), None)


def test_changed_fields_only_real_changes():
    current = {"first_name": "A", "emails": ["a@example.fi"], "title": None}
    assert domain.changed_fields(current, {"first_name": "A", "emails": ["b@example.fi"], "title": "CTO"}) == [
        "title", "emails"]
