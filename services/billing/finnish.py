"""Finnish business and payment identifiers as pure functions (issue 18, SPEC §6): business
id (Y-tunnus), VAT number, IBAN, BIC, reference number (viitenumero, 7-3-1), RF creditor
reference (ISO 11649), virtual barcode (virtuaaliviivakoodi, versions 4 and 5).

Each check says why a value is wrong (a rule, never the value), or None when it is right.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

_BUSINESS_ID = re.compile(r"^\d{7}-\d$")
_BUSINESS_WEIGHTS = (7, 9, 10, 5, 8, 4, 2)
_BIC = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")


def business_id_check_digit(first7: str) -> int | None:
    """The check digit of a business id's seven digits; None where no id has them (remainder 1)."""
    remainder = sum(int(d) * w for d, w in zip(first7, _BUSINESS_WEIGHTS)) % 11
    return None if remainder == 1 else (0 if remainder == 0 else 11 - remainder)


def business_id_problem(value: str) -> str | None:
    if not _BUSINESS_ID.match(value):
        return "must be seven digits, a hyphen and a check digit (1234567-8)"
    if business_id_check_digit(value[:7]) != int(value[-1]):
        return "check digit does not match"
    return None


def vat_number_of(business_id: str) -> str:
    """The Finnish VAT number of a business id: FI and its eight digits."""
    return "FI" + business_id.replace("-", "")


def vat_number_problem(value: str, business_id: str | None) -> str | None:
    if not re.fullmatch(r"FI\d{8}", value):
        return "must be FI and eight digits"
    if business_id is not None and value != vat_number_of(business_id):
        return "does not match the business id"
    return None


def _iban_number(iban: str) -> int:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved))


def iban_problem(value: str) -> str | None:
    iban = value.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return "must be a country code, two check digits and the account"
    if iban.startswith("FI") and len(iban) != 18:
        return "a Finnish IBAN has 18 characters"
    if _iban_number(iban) % 97 != 1:
        return "checksum does not match"
    return None


def bic_problem(value: str) -> str | None:
    return None if _BIC.match(value) else "must be 8 or 11 letters and digits (ISO 9362)"


# ---- reference numbers --------------------------------------------------------------------

def reference_check_digit(base: str) -> int:
    """7-3-1 weights from the right, check digit = distance to the next ten."""
    total = sum(int(d) * (7, 3, 1)[i % 3] for i, d in enumerate(reversed(base)))
    return (10 - total % 10) % 10


def reference_number(base: str) -> str:
    """A national reference number (viitenumero) from 3 to 19 digits of base."""
    if not base.isdigit() or not 3 <= len(base) <= 19:
        raise ValueError("reference base: 3 to 19 digits")
    return base + str(reference_check_digit(base))


def reference_problem(value: str) -> str | None:
    digits = value.replace(" ", "")
    if not digits.isdigit() or not 4 <= len(digits) <= 20:
        return "must be 4 to 20 digits"
    if reference_check_digit(digits[:-1]) != int(digits[-1]):
        return "check digit does not match"
    return None


def _mod97(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text)) % 97


def rf_reference(national: str) -> str:
    """ISO 11649 creditor reference of a national reference: RF, two check digits, the reference."""
    check = 98 - _mod97(national + "RF00")
    return f"RF{check:02d}{national}"


def rf_problem(value: str) -> str | None:
    text = value.replace(" ", "").upper()
    if not re.fullmatch(r"RF\d{2}[A-Z0-9]{1,21}", text):
        return "must be RF, two check digits and up to 21 characters"
    if _mod97(text[4:] + text[:4]) != 1:
        return "check digits do not match"
    return None


def normalise_reference(value: str) -> str:
    """A reference as compared when matching payments: no spaces, upper case, no leading zeros."""
    text = value.replace(" ", "").upper()
    return text if text.startswith("RF") else text.lstrip("0")


# ---- virtual barcode (Finance Finland's bank barcode guide, versions 4 and 5) ------------------

@dataclass(frozen=True)
class Barcode:
    version: int
    iban: str
    amount: Decimal
    reference: str  # national (version 4) or RF (version 5)
    due: date | None


def _amount_digits(amount: Decimal) -> str:
    cents = int((amount * 100).to_integral_value())
    return "0" * 8 if not 0 <= cents <= 99_999_999 else f"{cents:08d}"  # over 999 999.99: not shown


def _due_digits(due: date | None) -> str:
    return due.strftime("%y%m%d") if due else "000000"


def virtual_barcode(iban: str, amount: Decimal, reference: str, due: date | None) -> str:
    """The 54-digit virtual barcode: version 4 for a national reference, 5 for an RF one."""
    account = iban.replace(" ", "").upper()
    if not account.startswith("FI") or iban_problem(account):
        raise ValueError("iban: a valid Finnish IBAN is needed for the barcode")
    head = account[2:]  # the IBAN's check digits and BBAN: 16 digits
    if reference.upper().startswith("RF"):
        rf = reference.replace(" ", "").upper()
        if rf_problem(rf) or not rf[4:].isdigit():
            raise ValueError("reference: a numeric RF creditor reference is needed")
        return "5" + head + _amount_digits(amount) + rf[2:4] + rf[4:].rjust(21, "0") + _due_digits(due)
    if reference_problem(reference):
        raise ValueError("reference: not a valid reference number")
    return "4" + head + _amount_digits(amount) + "000" + reference.rjust(20, "0") + _due_digits(due)


def parse_virtual_barcode(code: str) -> Barcode:
    """Read a virtual barcode back, checking the IBAN and the reference by their rules."""
    if len(code) != 54 or not code.isdigit() or code[0] not in "45":
        raise ValueError("barcode: 54 digits, version 4 or 5")
    iban = "FI" + code[1:17]
    amount = Decimal(int(code[17:25])) / 100
    due_text = code[48:54]
    due = None if due_text == "000000" else date(2000 + int(due_text[:2]), int(due_text[2:4]), int(due_text[4:]))
    if code[0] == "4":
        if code[25:28] != "000":
            raise ValueError("barcode: version 4 reserve must be zeros")
        reference = code[28:48].lstrip("0")
        problem = reference_problem(reference)
    else:
        reference = "RF" + code[25:27] + code[27:48].lstrip("0")
        problem = rf_problem(reference)
    if problem or iban_problem(iban):
        raise ValueError(f"barcode: {problem or iban_problem(iban)}")
    return Barcode(int(code[0]), iban, amount, reference, due)


def grouped(text: str, size: int = 5) -> str:
    """A reference printed in groups of five (as on Finnish invoices)."""
    head = len(text) % size
    parts = ([text[:head]] if head else []) + [text[i:i + size] for i in range(head, len(text), size)]
    return " ".join(parts)
