"""Whom a dead letter names, as keyed digests only (issue 15, H1, SPEC §9): the extraction
reads ids, emails and phones out of any bytes, and erasure's tokens match what was stored."""
from __future__ import annotations

import hashlib
import uuid

from shared.privacy.digests import SuppressionKeyring
from shared.privacy.naming import NamingDigests, named_in, stored_tokens

PERSON = uuid.UUID("1b4e28ba-2fa1-41d2-883f-0016d3cca427")
KEY, OLD_KEY = b"k" * 32, b"o" * 32


def test_invalid_json_still_gives_its_ids_emails_and_phones():
    raw = f'{{"id": "{PERSON}", "data": {{"emails": ["Scan.X@Example.FI"], "phones": ["040 123 4567"'.encode()
    named = named_in(raw)
    assert named.ids == {PERSON}
    assert named.emails == {"scan.x@example.fi"}
    assert named.phones == {"+358401234567"}


def test_nested_and_escaped_values_are_read_from_the_json_document():
    raw = (b'{"a": {"b": [{"c": "\\u0073can@example.fi"}]}, "inner": "{\\"phone\\": \\"+358 50 7654321\\"}",'
           b' "+3580401234567": 1}')
    named = named_in(raw)
    assert "scan@example.fi" in named.emails  # only readable once the \u escape is decoded
    assert named.phones == {"+358507654321", "+358401234567"}  # in a nested string, and as a name


def test_several_points_in_free_text_and_the_message_key():
    raw = b"Soita 040 123 4567 tai +358 (0)50 765 4321, tai mailaa eka@example.fi; toka@example.com."
    named = named_in(raw, key=str(PERSON).encode())
    assert named.ids == {PERSON}
    assert named.emails == {"eka@example.fi", "toka@example.com"}
    assert named.phones >= {"+358401234567", "+358507654321"}


def test_bytes_that_are_no_text_name_nothing_and_cost_little():
    assert len(named_in(bytes(range(256)) * 100)) == 0
    assert len(named_in(b"1 " * 200_000)) == 0  # a hostile run of digits stops at the try budget


def test_stored_digests_are_keyed_and_erasure_finds_them_under_an_old_key_too():
    raw = f'{{"person_id": "{PERSON}", "emails": ["scan@example.fi"], "phones": ["0401234567"]}}'.encode()
    stored = NamingDigests(SuppressionKeyring(OLD_KEY)).of_message(raw)
    assert len(stored) == 3
    plain = [b"scan@example.fi", b"+358401234567", str(PERSON).encode()]
    for digest in stored:  # no unkeyed SHA-256/MD5 of a value in what is stored
        assert all(hashlib.sha256(v).hexdigest() not in digest and hashlib.md5(v).hexdigest() not in digest
                   for v in plain)
    rotated = NamingDigests(SuppressionKeyring(KEY, [OLD_KEY]))
    assert set(rotated.tokens([PERSON])) & set(stored)
    assert set(rotated.tokens(emails=["Scan@Example.fi"])) & set(stored)
    assert set(rotated.tokens(phones=["+358 40 123 4567"])) & set(stored)
    assert not set(NamingDigests(SuppressionKeyring(KEY)).tokens([PERSON], ["scan@example.fi"])) & set(stored)


def test_consents_kept_digests_find_the_dead_letters_naming_its_points():
    keyring = SuppressionKeyring(KEY)
    stored = NamingDigests(keyring).of_message(b'broken {"email": "scan@example.fi"')
    kept = [(keyring.current_chain, keyring.digest("email", "scan@example.fi"))]  # consent's contact_point
    assert set(stored_tokens(kept)) == set(stored)
    assert stored_tokens([(f"{keyring.current_chain}>abcdef12", b"x")]) == []  # a wrapped digest names none


def test_the_dedupe_digest_of_the_bytes_is_keyed():
    raw = b"+358401234567"
    digest = NamingDigests(SuppressionKeyring(KEY)).bytes_digest(raw)
    assert hashlib.sha256(raw).hexdigest() not in digest
    assert digest == NamingDigests(SuppressionKeyring(KEY)).bytes_digest(raw)
