"""Finnish identifiers and payment conventions (issue 18, SPEC §6): business id, VAT
number, IBAN, reference number (7-3-1), RF creditor reference, virtual barcode 4 and 5."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing import finnish

IBAN = "FI21 1234 5600 0007 85"  # the example account of the Finnish bank barcode guide


def test_business_id_check_digit():
    assert finnish.business_id_problem("1234567-1") is None  # 7·1+9·2+10·3+5·4+8·5+4·6+2·7 = 153, % 11 = 10 → 1
    assert finnish.business_id_problem("1234567-2") == "check digit does not match"
    assert finnish.business_id_problem("112038-9").startswith("must be")
    assert finnish.business_id_check_digit("0000006") is None  # 6·2 = 12, remainder 1: no valid id


def test_vat_number_must_match_the_business_id():
    assert finnish.vat_number_of("1234567-1") == "FI12345671"
    assert finnish.vat_number_problem("FI12345671", "1234567-1") is None
    assert finnish.vat_number_problem("FI12345672", "1234567-1") == "does not match the business id"
    assert finnish.vat_number_problem("SE12345671", None) == "must be FI and eight digits"


def test_iban_checksum_and_bic():
    assert finnish.iban_problem(IBAN) is None
    assert finnish.iban_problem("FI21 1234 5600 0007 86") == "checksum does not match"
    assert finnish.iban_problem("FI21 1234") is not None
    assert finnish.bic_problem("NDEAFIHH") is None and finnish.bic_problem("NDEA") is not None


def test_reference_number_7_3_1():
    # by hand, weights 7, 3, 1 from the right: 1·7 + 6·3 + 5·1 + 4·7 + 3·3 + 2·1 + 1·7 = 76 → 4
    assert finnish.reference_number("1234561") == "12345614"
    assert finnish.reference_number("123") == "1232"  # 3·7 + 2·3 + 1·1 = 28 → 2
    assert finnish.reference_problem("12345614") is None
    assert finnish.reference_problem("12345613") == "check digit does not match"
    with pytest.raises(ValueError):
        finnish.reference_number("12")


def test_rf_creditor_reference():
    assert finnish.rf_reference("12345614") == "RF0212345614"  # by hand: 12345614271500 mod 97 = 96, 98 − 96
    assert finnish.rf_problem("RF02 1234 5614") is None
    assert finnish.rf_problem("RF03 1234 5614") == "check digits do not match"
    assert finnish.rf_problem("RF18539007547034") is None  # ISO 11649's example


def test_virtual_barcode_versions_4_and_5_field_by_field():
    """Version 4: 4, IBAN's 16 digits, euros (6) and cents (2), 000, reference (20), YYMMDD;
    version 5: 5, IBAN, amount, the RF check digits, reference (21), YYMMDD."""
    code4 = finnish.virtual_barcode(IBAN, D("4883.15"), "868516259619897", date(2010, 6, 12))
    assert code4 == "421123456000007850048831500000000868516259619897100612"
    code5 = finnish.virtual_barcode(IBAN, D("4883.15"), finnish.rf_reference("868516259619897"), date(2010, 6, 12))
    assert code5 == "521123456000007850048831509000000868516259619897100612"


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=0, max_value=99_999_999),
       st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), st.booleans())
def test_barcode_round_trips_through_its_check_rules(number, cents, due, rf):
    national = finnish.reference_number("1" + str(number).rjust(3, "0"))
    reference = finnish.rf_reference(national) if rf else national
    assert finnish.reference_problem(national) is None and (not rf or finnish.rf_problem(reference) is None)
    amount = D(cents) / 100
    parsed = finnish.parse_virtual_barcode(finnish.virtual_barcode(IBAN, amount, reference, due))
    assert (parsed.version, parsed.iban, parsed.amount, parsed.reference, parsed.due) == (
        5 if rf else 4, IBAN.replace(" ", ""), amount, reference, due)


def test_a_corrupted_barcode_fails_its_check():
    code = finnish.virtual_barcode(IBAN, D("10"), "12345614", None)
    with pytest.raises(ValueError):
        finnish.parse_virtual_barcode(code[:30] + ("1" if code[30] != "1" else "2") + code[31:])


def test_reference_grouped_in_fives():
    assert finnish.grouped("12345612") == "123 45612"


def test_payment_status_and_age_buckets():
    from services.billing import payments
    assert [payments.status(D("10"), D(p)) for p in ("0", "4", "10", "11")] == [
        "unpaid", "partly_paid", "paid", "overpaid"]
    assert payments.status(D("0"), D("0")) == "paid"  # fully credited
    assert [payments.bucket(d) for d in (-3, 0, 1, 30, 31, 61, 91)] == [
        "not_due", "not_due", "1-30", "1-30", "31-60", "61-90", "over_90"]
    assert payments.age_days(date(2025, 1, 1), date(2025, 1, 31)) == 30
