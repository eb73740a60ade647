"""Pure consent rules: the check decision, ban lifting, normalising and hashing (R8, R13)."""
from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, strategies as st

from services.consent.domain import (
    ContactPointHasher, Reason, decide, derive_suppression_key, may_lift_ban, normalise_email, normalise_phone,
)
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


def test_emails_normalised_as_contacts_publishes_them():
    assert normalise_email("  Matti.Meikalainen@Example.FI ") == "matti.meikalainen@example.fi"
    for bad in ("", "no-at-sign", "@example.fi", "a@nodot", "a b@example.fi", "a@b@example.fi"):
        assert normalise_email(bad) is None


def test_phones_normalised_to_e164():
    assert normalise_phone("+358401234567") == "+358401234567"
    assert normalise_phone("040 123 4567") == "+358401234567"
    assert normalise_phone("not a phone") is None


@given(st.emails())
def test_r8_hash_is_keyed_and_stable_for_the_normalised_email(email):
    hasher = ContactPointHasher(b"k1")
    assert hasher.email(email.lower()) == hasher.emails([email.upper()])[0] or normalise_email(email) is None
    assert ContactPointHasher(b"k2").email(email.lower()) != hasher.email(email.lower())


def test_r8_email_and_phone_hashes_never_collide_by_kind():
    hasher = ContactPointHasher(b"key")
    assert hasher.email("+358401234567") != hasher.phone("+358401234567")
    assert hasher.emails(["bad"]) == [None]
    assert len(hasher.contact_points(["a@example.fi", "bad"], ["+358401234567"])) == 2


def test_suppression_key_configured_or_derived():
    assert derive_suppression_key("secret", "tok") == b"secret"
    assert derive_suppression_key("", "tok") != derive_suppression_key("", "other")


@given(key=st.binary(min_size=1, max_size=100), value=st.text(max_size=60))
def test_r8_precomputed_hash_is_exactly_hmac_sha256(key, value):
    hasher = ContactPointHasher(key)
    assert hasher.email(value) == hmac.new(key, b"email:" + value.encode(), hashlib.sha256).digest()
    assert hasher.phone(value) == hmac.new(key, b"phone:" + value.encode(), hashlib.sha256).digest()
