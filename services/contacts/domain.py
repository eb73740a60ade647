"""Pure rules of the contacts service: identifiers, contact points, the person lifecycle,
who may read what, login lockout and marketing eligibility. No I/O.

Errors are `ValueError`s whose message names the rule, never the value (it may be personal).
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from enum import StrEnum

import phonenumbers

from shared.web.auth import Role
from shared.messaging.events import Purpose

# ---- identifiers and contact points (R3) ----------------------------------------------

BUSINESS_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2)
_BUSINESS_ID = re.compile(r"^(\d{6,7})-(\d)$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


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


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("not a valid email address")
    return email


def normalise_phone(value: str, region: str = "FI") -> str:
    """E.164; national numbers are read as Finnish."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def contact_point_digest(value: str) -> str:
    """What contacts keeps of a banned contact point after erasure (R8): a digest, not the value."""
    return hashlib.sha256(value.encode()).hexdigest()


# ---- lifecycle (SPEC §3, R5-R7) --------------------------------------------------------

class State(StrEnum):
    prospect = "prospect"
    active = "active"
    ended = "ended"
    passive = "passive"
    erased = "erased"
    marketing = "marketing"


FINAL_STATES = frozenset({State.erased, State.marketing})


def on_connection_started(state: State, kind: str) -> State:
    """A relationship or assignment began. Prospects become active with a customer
    relationship or an assignment; ended or passive persons are reactivated (SPEC §3)."""
    if state in (State.ended, State.passive):
        return State.active
    if state is State.prospect and kind != "prospect":
        return State.active
    return state


def is_reactivation(before: State, after: State) -> bool:
    return before in (State.ended, State.passive) and after is State.active


def on_connection_ended(state: State, open_connections: int) -> State:
    """The last open relationship or assignment ended: the person's connection ended (R5, R6)."""
    if open_connections == 0 and state in (State.prospect, State.active):
        return State.ended
    return state


class CommandOutcome(StrEnum):
    apply = "apply"          # do it, then confirm
    confirm_only = "confirm_only"  # already done: confirm again, change nothing
    stale = "stale"          # the person became active again: ignore the command


def passivation_outcome(state: State) -> CommandOutcome:
    """R6: only a person whose connection ended is passivated; a reactivated one is not."""
    if state is State.ended:
        return CommandOutcome.apply
    if state in (State.passive, State.erased, State.marketing):
        return CommandOutcome.confirm_only
    return CommandOutcome.stale


def disposition_outcome(state: State, action: str) -> CommandOutcome:
    """R7: erase or transfer a person who is no longer active; repeated commands confirm again."""
    done = State.erased if action == "erase" else State.marketing
    if state is done:
        return CommandOutcome.confirm_only
    if state is State.erased:
        return CommandOutcome.confirm_only  # nothing left to transfer
    if action == "erase" and state is State.marketing:
        return CommandOutcome.apply  # the marketing register's own data may be erased too
    if state in (State.ended, State.passive):
        return CommandOutcome.apply
    return CommandOutcome.stale


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
