"""Consent's slice of an access report (R12): the person's permissions and bans with their
evidence and full history, membership of the marketing register,
and, found by the asked contact points' keyed hashes alone, the suppression records that
outlive erasure (R8). A consent record's purpose is the marketing purpose it is about (R13).

Wired with `shared.access.answer_access_requests`; the queries below only read.
"""
from __future__ import annotations

import uuid
from typing import Any

from shared.access import AccessSlice, access_item
from shared.messaging.events import AccessRequested
from shared.privacy import ContactPointDigests, SuppressionChains

def _asked_points(digests: ContactPointDigests, request: AccessRequested) -> list[tuple[str, str, list[bytes]]]:
    """(kind, value, its digest under each live key chain) of every valid contact point asked."""
    points = [("email", v, d) for v, d in zip(request.emails, digests.emails(request.emails)) if d is not None]
    return points + [("phone", v, d) for v, d in zip(request.phones, digests.phones(request.phones)) if d is not None]


async def person_items(store: Any, person_id: uuid.UUID) -> list[dict[str, Any]]:
    items = [access_item("consent_state", f"{r['purpose']}/{r['channel']}", r["status"], source=r["source"],
                         purpose=r["purpose"], recorded_at=r["recorded_at"], type="consent_state",
                         channel=r["channel"], method=r["method"], actor=r["actor"],
                         notice_version=r["notice_version"])
             for r in await store.states_of(person_id)]
    items += [access_item("consent_history", f"{r['purpose']}/{r['channel']}", r["change"], source=r["source"],
                          purpose=r["purpose"], recorded_at=r["recorded_at"], type="consent_history",
                          channel=r["channel"], method=r["method"], actor=r["actor"],
                          notice_version=r["notice_version"], client_network=r.get("client_network"))
              for r in await store.history_of(person_id)]
    transferred_at = await store.in_marketing_register_since(person_id)
    if transferred_at is not None:
        items.append(access_item("marketing_register", "member", True, source="register",
                                 purpose="customer_relationship", recorded_at=transferred_at,
                                 type="marketing_register"))
    return items


async def portable_items(store: Any, person_id: uuid.UUID) -> list[dict[str, Any]]:
    """A portability export's part (Art. 20, issue 14): each permission and ban in force."""
    return [access_item("consent_state", f"{r['purpose']}/{r['channel']}", r["status"], source=r["source"],
                        purpose=r["purpose"], recorded_at=r["recorded_at"], type="consent_state",
                        channel=r["channel"], method=r["method"], notice_version=r["notice_version"])
            for r in await store.states_of(person_id)]


def slice_for(hasher: SuppressionChains) -> AccessSlice:
    """The slice function for `answer_access_requests`, bound to the service's hash key."""

    async def consent_slice(store: Any, request: AccessRequested) -> list[dict[str, Any]]:
        if request.purpose == "portability":  # Art. 20: the permissions and bans the person gave
            return await portable_items(store, request.person_id) if request.person_id is not None else []
        items: list[dict[str, Any]] = []
        if request.person_id is not None:
            items += await person_items(store, request.person_id)
        for kind, value, digests in _asked_points(await store.suppression_digests(hasher), request):
            items += [access_item("suppression_record", kind, value, source=r["source"], purpose=r["purpose"],
                                  recorded_at=r["recorded_at"], type="suppression_record", channel=r["channel"],
                                  stored_as="keyed hash (HMAC-SHA256)")
                      for r in await store.suppressions_of(digests)]
        return items

    return consent_slice
