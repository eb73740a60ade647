"""Keyed digests of contact points and their rotation (R8, SPEC §9)."""
from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from hypothesis import given, strategies as st

from shared.privacy.digests import ContactPointDigests, SuppressionKey, SuppressionKeyring, UnknownSuppressionKey

OLD, NEW = os.urandom(32), os.urandom(32)


@given(key=st.binary(min_size=1, max_size=100), value=st.text(max_size=60))
def test_r8_a_digest_is_exactly_hmac_sha256_of_kind_and_value(key, value):
    digests = ContactPointDigests(SuppressionKeyring(key), [SuppressionKey(key).id])
    assert digests.of("email", value) == [hmac.new(key, b"email:" + value.encode(), hashlib.sha256).digest()]
    assert digests.of("phone", value) == [hmac.new(key, b"phone:" + value.encode(), hashlib.sha256).digest()]


@given(st.emails())
def test_r8_a_digest_is_keyed_and_the_same_for_every_written_form_of_an_email(email):
    digests = ContactPointDigests(SuppressionKeyring(OLD), [SuppressionKey(OLD).id])
    other = ContactPointDigests(SuppressionKeyring(NEW), [SuppressionKey(NEW).id])
    assert digests.emails([email.upper()]) == digests.emails([f" {email.lower()} "])
    assert digests.emails([email]) != other.emails([email]) or digests.emails([email]) == [None]


def test_r8_the_same_value_as_email_and_as_phone_digests_apart():
    keyring = SuppressionKeyring(NEW)
    assert keyring.digest("email", "+358401234567") != keyring.digest("phone", "+358401234567")


def test_key_ids_name_keys_without_revealing_them():
    assert SuppressionKey(OLD).id != SuppressionKey(NEW).id
    assert SuppressionKey(NEW).id == SuppressionKey(bytes(NEW)).id and len(SuppressionKey(NEW).id) == 8
    assert SuppressionKey(NEW).id not in (NEW.hex(), hashlib.sha256(NEW).hexdigest()[:8])


def test_r8_a_rekeyed_digest_is_the_value_under_the_extended_chain():
    """What `rekey` writes (the stored digest wrapped once more) is what a check computes."""
    before = SuppressionKeyring(OLD)
    stored = before.digest("email", "matti@example.fi")
    after = SuppressionKeyring(NEW, [OLD])
    chain = after.extended(before.current_chain)
    assert chain == f"{SuppressionKey(OLD).id}>{SuppressionKey(NEW).id}"
    assert after.rewrap(stored) == after.digest("email", "matti@example.fi", chain)
    assert after.extended(chain) == chain and after.is_current(chain) and not after.is_current(before.current_chain)


def test_r8_points_are_stored_under_every_live_chain_and_matched_under_each():
    keyring = SuppressionKeyring(NEW, [OLD])
    chains = [SuppressionKey(OLD).id, keyring.current_chain]
    digests = ContactPointDigests(keyring, chains)
    stored = digests.points(["Matti@Example.fi", "not an email"], ["040 123 4567"])
    assert [(p.kind, p.chain) for p in stored] == [("email", chains[0]), ("email", chains[1]),
                                                    ("phone", chains[0]), ("phone", chains[1])]
    assert digests.emails(["matti@example.fi", "nope"]) == [[p.digest for p in stored[:2]], None]
    assert digests.phones(["+3580401234567"]) == [[p.digest for p in stored[2:]]]
    assert digests.tokens([], ["+358401234567"]) == [f"{p.chain}:{p.digest.hex()}" for p in stored[2:]]


def test_a_chain_naming_a_key_not_configured_is_a_clear_configuration_error():
    with pytest.raises(UnknownSuppressionKey, match="REKISTERI_SUPPRESSION_OLD_KEYS"):
        ContactPointDigests(SuppressionKeyring(NEW), [f"{SuppressionKey(OLD).id}>{SuppressionKey(NEW).id}"])
