"""The one normal form of an email and a phone (SPEC §9, R3, R8): what every service stores,
hashes and checks, so a ban filed in one written form holds for every other."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from shared.privacy import contact_points
from shared.privacy.contact_points import InvalidContactPoint, email_or_none, normalise_email, normalise_phone

# The rule contacts validated with before the kernel: the kernel keeps its meaning.
_CONTACTS_EMAIL_RULE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def test_r3_email_trimmed_and_lower_cased():
    assert normalise_email("  Matti.Meikalainen@Example.FI ") == "matti.meikalainen@example.fi"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "a@b.c", "a@@b.fi", "a b@c.fi", "@b.fi",
                                 "x" * 65 + "@b.fi", "a@b.fi\u2003x", "a@" + "b" * 250 + ".fi"])
def test_r3_not_an_email_is_refused_naming_the_rule_not_the_value(bad):
    with pytest.raises(InvalidContactPoint) as refused:
        normalise_email(bad)
    assert bad.strip() == "" or bad.strip() not in str(refused.value)
    assert email_or_none(bad) is None


@given(st.text(alphabet=st.sampled_from("ab.@ \t\u00a0Ä1-_"), max_size=20))
def test_email_rule_means_what_the_contacts_pattern_meant(value):
    email = value.strip().lower()
    expected = email if _CONTACTS_EMAIL_RULE.match(email) and "\n" not in email else None
    assert email_or_none(value) == expected


def test_an_over_long_email_is_refused_by_its_length_before_any_pattern(monkeypatch):
    """consent's old pattern took 24 s on this value; the length cap refuses it unread."""
    class NeverSearched:
        def search(self, _value: str) -> None:
            raise AssertionError("the whitespace pattern ran on an over-long value")

    monkeypatch.setattr(contact_points, "_WHITESPACE", NeverSearched())
    for value in ("a@" + "." * 32000 + "@", "a@b.fi" + " " * (1 << 20), "x" * (1 << 20)):
        with pytest.raises(InvalidContactPoint, match="at most 254"):
            normalise_email(value)


def test_the_pathological_email_of_the_old_pattern_is_refused():
    assert email_or_none("a@" + "." * 32000 + "@") is None
    assert email_or_none("a@" + "." * 240 + "@") is None  # under the cap: linear, no pattern


@pytest.mark.parametrize("written", ["+358401234567", "+3580401234567", "040 123 4567", "040-123 4567",
                                     "+358 40 1234567", "(040) 123 4567", "０４０ １２３ ４５６７",
                                     "＋３５８ ４０ １２３ ４５６７", " +358401234567 "])
def test_r8_every_written_form_of_a_finnish_mobile_is_one_e164_number(written):
    assert normalise_phone(written) == "+358401234567"


@pytest.mark.parametrize("bad", ["not a phone", "٠٤٠١٢٣٤٥٦٧", "040 123 4567 ext", "+358 40 123", "",
                                 "1" * 33, "0" * 40 + "401234567"])
def test_r8_not_a_phone_number_is_refused(bad):
    with pytest.raises(InvalidContactPoint):
        normalise_phone(bad)


def test_an_over_long_phone_is_refused_before_phonenumbers_parses_it(monkeypatch):
    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("phonenumbers parsed an over-long value")

    monkeypatch.setattr(contact_points.phonenumbers, "parse", never)
    for value in ("0" * 33, "+358 " + "4" * (1 << 20)):
        with pytest.raises(InvalidContactPoint, match="at most 32"):
            normalise_phone(value)


def test_foreign_numbers_keep_their_country_code():
    assert normalise_phone("+46 70 123 45 67") == "+46701234567"
