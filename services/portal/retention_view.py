"""What the portal shows of a person's retention (issue 19, SPEC §10 "visible retention"):
retention's `GET /persons/{person_id}/retention` answer made safe for a template. Pure."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

# retention's person states: the lifecycle's (shared/lifecycle.py) and its own "disposing".
STATES = ("prospect", "active", "ended", "passive", "disposing", "erased", "marketing")


def _day(value: Any) -> date | None:
    """A date, or the day of an ISO timestamp; anything else is no date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def retention_view(answer: Any) -> dict[str, Any] | None:
    """None when retention said nothing (not reachable, no right, person unknown to it)."""
    if not isinstance(answer, dict) or "state" not in answer:
        return None
    holds = [{"hold_id": str(h.get("hold_id", "")), "reason": str(h.get("reason") or ""), "until": _day(h.get("until"))}
             for h in answer.get("holds") or [] if isinstance(h, dict)]
    state = str(answer["state"])
    return {
        "state": state if state in STATES else "",
        "passivation_due": _day(answer.get("passivation_due")),
        "disposition_due": _day(answer.get("disposition_due")),
        "rule": str(answer.get("rule") or ""),
        "basis": str(answer.get("basis") or ""),
        "holds": sorted(holds, key=lambda h: h["until"] or date.max),
        "blocked": bool(answer.get("blocked")),
        "overdue_since": _day(answer.get("overdue_since")),
    }
