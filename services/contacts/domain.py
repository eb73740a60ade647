"""Pure rules of the contacts service: identifiers, contact points, the person lifecycle,
who may read what, login lockout and marketing eligibility. No I/O.

Errors are `ValueError`s whose message names the rule, never the value (it may be personal).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TypeVar

from shared import privacy
from shared.lifecycle import (FINAL_STATES, CommandOutcome, State, disposition_outcome, is_reactivation,  # noqa: F401 - the lifecycle, defined once
                              on_connection_ended, on_connection_started, passivation_outcome)
from shared.web.auth import Role
from shared.messaging.events import Purpose

# ---- identifiers and contact points (R3) ----------------------------------------------

BUSINESS_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2)
_BUSINESS_ID = re.compile(r"^(\d{6,7})-(\d)$")


def business_id_check_digit(digits: str) -> int | None:
    """The y-tunnus check digit of seven digits, or None when no digit can be valid (remainder 1)."""
    remainder = sum(int(d) * w for d, w in zip(digits, BUSINESS_ID_WEIGHTS)) % 11
    if remainder == 0:
        return 0
    if remainder == 1:
        return None
    return 11 - remainder


def normalise_business_id(value: str) -> str:
    """'NNNNNNN-N' with its check digit verified; old six-digit ids get their leading zero."""
    match = _BUSINESS_ID.match(value.strip())
    if not match:
        raise ValueError("a y-tunnus must look like 1234567-8")
    digits = match.group(1).zfill(7)
    if business_id_check_digit(digits) != int(match.group(2)):
        raise ValueError("the y-tunnus check digit does not match")
    return f"{digits}-{match.group(2)}"


# Emails and phones have one normal form in the whole register: the privacy kernel's (SPEC §9).
normalise_email = privacy.normalise_email
normalise_phone = privacy.normalise_phone


T = TypeVar("T")


def unique(values: list[T]) -> list[T]:
    return list(dict.fromkeys(values))




# ---- access (R6, R10, R11) -------------------------------------------------------------

STAFF_ROLES = (Role.register_owner, Role.register_user)


def staff_may_read(role: Role, state: State) -> bool:
    """Passivated data is readable only by the register owner (R6, R10)."""
    if state is State.passive:
        return role is Role.register_owner
    return role in STAFF_ROLES


# ---- self-service login lockout (R11) --------------------------------------------------

MAX_FAILED_LOGINS = 5
FIRST_LOCKOUT = timedelta(seconds=30)
LONGEST_LOCKOUT = timedelta(minutes=15)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def lockout_after(failed: int) -> timedelta | None:
    """From the fifth failure in a row: 30 s, doubling per further failure, never past 15 min."""
    if failed < MAX_FAILED_LOGINS:
        return None
    return min(FIRST_LOCKOUT * 2 ** min(failed - MAX_FAILED_LOGINS, 16), LONGEST_LOCKOUT)


def after_failed_login(failed_attempts: int, now: datetime) -> tuple[int, datetime | None]:
    """Count the failure; from the fifth in a row the account waits an exponentially growing,
    capped delay. Attempts during a delay are not counted (the caller skips them), so nobody
    can keep an account locked for longer than one capped delay per guess (issue 16)."""
    failed = failed_attempts + 1
    delay = lockout_after(failed)
    return failed, (now + delay if delay else None)


# ---- marketing (R1, R7, R13) -----------------------------------------------------------

MARKETABLE_STATES = frozenset({State.prospect, State.active, State.marketing})


def may_market(state: State, purposes: list[str], bans: set[str], purpose: Purpose | None) -> bool:
    """In the marketing register or processed for the customer relationship (P1 includes
    marketing), and no ban for the asked purpose (any ban when none is asked) (R13)."""
    if state not in MARKETABLE_STATES:
        return False
    if state is not State.marketing and "customer_relationship" not in purposes:
        return False
    if purpose is None:
        return not bans
    return purpose.value not in bans


# ---- rectification (R14) and updates ----------------------------------------------------

PERSON_FIELDS = ("first_name", "last_name", "title", "expertise", "emails", "phones", "other_contact",
                 "organisation_id")
SELF_SERVICE_FIELDS = frozenset(PERSON_FIELDS) - {"organisation_id"}
# What the marketing register keeps of a transferred person (R7: only what marketing needs).
MARKETING_FIELDS = ("first_name", "last_name", "title", "emails", "phones", "organisation_id")


def changed_fields(current: dict, update: dict) -> list[str]:
    return [f for f in PERSON_FIELDS if f in update and update[f] != current.get(f)]

# R1: the purpose each kind of stored item serves (persons and service records carry their own).
SECTION_PURPOSES = {
    "organisation": ["customer_relationship"],
    "account": ["assignments"],
    "relationships": ["customer_relationship"],
    "assignments": ["assignments"],
    "marketing_bans": ["customer_relationship"],
    "rectifications": ["customer_relationship", "assignments"],
}
