"""Retention's slice of a right-of-access report (R12): the person's lifecycle state,
relationships and assignments as retention times them, pending deadlines, legal holds,
disposition evidence, and the visible timing (issue 14: when passivation and disposition are
due, by which rule, counted from what, what holds or blocks it — the same value as
`GET /persons/{person_id}/retention`). Without a person id retention holds nothing (it keeps
no contact points)."""
from __future__ import annotations

from typing import Any, Protocol

from services.retention.domain import Clock
from services.retention.timing import person_retention
from shared.access import AccessSlice, access_item
from shared.messaging.events import AccessRequested

CATEGORY = "retention"
PURPOSE_OF = {"relationships": "customer_relationship", "assignments": "assignments"}


class TimingRules(Protocol):
    """The live clock and confirmation timeout the slice reads at each request."""

    @property
    def clock(self) -> Clock: ...

    @property
    def confirmation_timeout_s(self) -> float: ...


def slice_for(rules: TimingRules) -> AccessSlice:
    async def retention_slice(store: Any, request: AccessRequested) -> list[dict[str, Any]]:
        if request.person_id is None:
            return []
        found = await store.person_slice(request.person_id)
        items: list[dict[str, Any]] = []
        for section, rows in found.items():
            for row in rows:
                items.append(access_item(CATEGORY, section, dict(row), source="service_event",
                                         purpose=PURPOSE_OF.get(section, "customer_relationship")))
        facts = await store.timing_facts(request.person_id)
        if facts is not None:
            timing = person_retention(request.person_id, facts, rules.clock.now(), rules.confirmation_timeout_s)
            items.append(access_item(CATEGORY, "timing", timing.model_dump(mode="json"), source="service_event",
                                     purpose="customer_relationship", type="retention_timing"))
        return items

    return retention_slice
