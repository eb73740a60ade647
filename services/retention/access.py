"""Retention's slice of a right-of-access report (R12): the person's lifecycle state,
relationships and assignments as retention times them, pending deadlines, legal holds and
disposition evidence. Without a person id retention holds nothing (it keeps no contact points)."""
from __future__ import annotations

from typing import Any

from shared.access import access_item
from shared.messaging.events import AccessRequested

CATEGORY = "retention"
PURPOSE_OF = {"relationships": "customer_relationship", "assignments": "assignments"}


async def retention_slice(store: Any, request: AccessRequested) -> list[dict[str, Any]]:
    if request.person_id is None:
        return []
    found = await store.person_slice(request.person_id)
    items: list[dict[str, Any]] = []
    for section, rows in found.items():
        for row in rows:
            value = dict(row)
            items.append(access_item(CATEGORY, section, value, source="service_event",
                                     purpose=PURPOSE_OF.get(section, "customer_relationship")))
    return items
