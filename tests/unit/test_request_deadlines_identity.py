"""One-time identity codes for requests by email or phone (SPEC §10): ten minutes, five tries,
kept only as a salted hash."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.contacts.identity_codes import CODE_DIGITS, LIFETIME, TRIES, Outcome, check, digest, issue

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_issued_code_is_kept_only_as_a_salted_hash_valid_ten_minutes():
    issued = issue(NOW)
    assert len(issued.code) == CODE_DIGITS and issued.code.isdigit()
    assert issued.code.encode() not in issued.digest and issued.expires_at == NOW + timedelta(minutes=10)
    assert timedelta(minutes=10) == LIFETIME and TRIES == 5
    assert issue(NOW).salt != issued.salt  # the same code twice never hashes the same


def _check(issued, given_code, *, tries=TRIES, at=NOW):
    return check(given_code, salt=issued.salt, stored=issued.digest, expires_at=issued.expires_at,
                 tries_left=tries, now=at)


def test_the_right_code_verifies_within_ten_minutes_and_tries():
    issued = issue(NOW)
    assert _check(issued, issued.code) is Outcome.verified
    assert _check(issued, f" {issued.code} ", at=NOW + timedelta(minutes=9, seconds=59)) is Outcome.verified
    assert _check(issued, issued.code, tries=1) is Outcome.verified


def test_the_right_code_is_refused_once_expired_or_out_of_tries():
    issued = issue(NOW)
    assert _check(issued, issued.code, at=NOW + timedelta(minutes=10)) is Outcome.expired
    assert _check(issued, issued.code, tries=0) is Outcome.exhausted


@given(st.text(max_size=12))
def test_any_other_code_is_wrong(other):
    issued = issue(NOW)
    if other.strip() != issued.code:
        assert _check(issued, other) is Outcome.wrong
    assert digest(issued.code, issued.salt) == issued.digest
