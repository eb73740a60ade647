"""Pure consent rules (R8, R13): whether a ban may be lifted, and the allow/deny decision of
a check. No I/O. Contact points are normalised and digested by the privacy kernel
(`shared.privacy`), the same way in every service."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.web.auth import Role


class Status(StrEnum):
    granted = "granted"
    banned = "banned"


class Reason(StrEnum):
    """Why a check came out as it did."""

    erased = "erased"  # the person was erased everywhere (R7): never market
    banned = "banned"  # the person banned this purpose and channel (R13)
    suppression_list = "suppression_list"  # the contact point is suppressed (R8)
    granted = "granted"  # the person permitted it
    no_ban = "no_ban"  # no ban recorded: B2B marketing to a legitimate connection (R1 P1)
    invalid_contact_point = "invalid_contact_point"


@dataclass(frozen=True)
class CheckOutcome:
    allowed: bool
    reason: Reason


def decide(*, erased: bool = False, banned: bool = False, suppressed: bool = False,
           granted: bool = False) -> CheckOutcome:
    """May we market to this target for one purpose and channel? A ban always wins."""
    if erased:
        return CheckOutcome(False, Reason.erased)
    if banned:
        return CheckOutcome(False, Reason.banned)
    if suppressed:
        return CheckOutcome(False, Reason.suppression_list)
    if granted:
        return CheckOutcome(True, Reason.granted)
    return CheckOutcome(True, Reason.no_ban)


INVALID = CheckOutcome(False, Reason.invalid_contact_point)


class Decision(StrEnum):
    grant = "grant"
    ban = "ban"
    withdraw = "withdraw"


def may_lift_ban(*, role: Role, actor_is_person: bool, method: str | None, notice_version: str | None) -> bool:
    """A later permission lifts a ban only when it comes from the person themselves, with
    evidence of how and under which notice text (R13)."""
    return role is Role.subject and actor_is_person and bool(method) and bool(notice_version)
