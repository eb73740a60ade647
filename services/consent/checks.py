"""Allow/deny checks (R8, R13): one target, or a campaign list of up to 100,000, answered
with a few set-based queries whatever the list's size (hashes computed in memory, under each
live suppression key chain, SPEC §9)."""
from __future__ import annotations

import uuid
from typing import Any, Sequence

import asyncpg

from services.consent import storage
from services.consent.domain import INVALID, CheckOutcome, decide
from shared.messaging.events import Channel, Purpose
from shared.privacy import SuppressionChains, email_or_none, phone_or_none


def _outcomes(hits: list[tuple[int, str]]) -> dict[int, CheckOutcome]:
    """Positions (0-based) with any hit, decided; the rest are the default `no_ban`."""
    flags: dict[int, set[str]] = {}
    for ordinal, hit in hits:
        flags.setdefault(ordinal - 1, set()).add(hit)
    return {i: decide(erased="erased" in f, banned="banned" in f, suppressed="suppressed" in f,
                      granted="granted" in f) for i, f in flags.items()}


async def check_one(pool: asyncpg.Pool, hasher: SuppressionChains, purpose: Purpose, channel: Channel, *,
                    email: str | None = None, phone: str | None = None, person_id: uuid.UUID | None = None
                    ) -> CheckOutcome | None:
    """One target's outcome; None when the email or phone is not valid."""
    if person_id is not None:
        hits = await storage.check_persons(pool, [person_id], purpose.value, channel.value)
    else:
        kind, value = ("email", email_or_none(email)) if email is not None else ("phone", phone_or_none(phone or ""))
        if value is None:
            return None
        digests = (await hasher.digests(pool)).of(kind, value)
        hits = await storage.check_digests(pool, digests, purpose.value, channel.value, per_point=len(digests))
    return _outcomes(hits).get(0, decide())


def _render(outcomes: Sequence[CheckOutcome]) -> list[dict[str, Any]]:
    """Each outcome's answer, one dict per distinct outcome object (a list holds a handful):
    keyed by identity, so 100,000 entries cost no hashing of the outcome and no dict built and
    dropped per entry."""
    rendered: dict[int, dict[str, Any]] = {}
    out = []
    for o in outcomes:
        answer = rendered.get(id(o))
        if answer is None:
            answer = rendered[id(o)] = {"allowed": o.allowed, "reason": o.reason.value}
        out.append(answer)
    return out


async def _contact_points(pool: asyncpg.Pool, digests: list[list[bytes] | None], purpose: str, channel: str,
                          per_point: int) -> list[CheckOutcome]:
    """Outcomes of contact points given as their digests under each live chain (None: invalid)."""
    valid_positions = [i for i, d in enumerate(digests) if d is not None]
    valid = [one for d in digests if d is not None for one in d]
    hits = await storage.check_digests(pool, valid, purpose, channel, per_point=per_point)
    decided = _outcomes(hits)
    default = decide()
    out = [INVALID] * len(digests)
    for k, i in enumerate(valid_positions):
        out[i] = decided.get(k, default)
    return out


async def check_batch(pool: asyncpg.Pool, hasher: SuppressionChains, purpose: Purpose, channel: Channel, *,
                      emails: list[str], phones: list[str], person_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Outcomes in the order given, per list, and how many were denied."""
    p, c = purpose.value, channel.value
    digests = await hasher.digests(pool)
    chains = len(digests.chains)
    email_out = await _contact_points(pool, digests.emails(emails), p, c, chains) if emails else []
    phone_out = await _contact_points(pool, digests.phones(phones), p, c, chains) if phones else []
    person_out: list[CheckOutcome] = []
    if person_ids:
        decided = _outcomes(await storage.check_persons(pool, person_ids, p, c))
        default = decide()
        person_out = [decided.get(i, default) for i in range(len(person_ids))]
    denied = sum(1 for o in (*email_out, *phone_out, *person_out) if not o.allowed)
    return {"emails": _render(email_out), "phones": _render(phone_out), "person_ids": _render(person_out),
            "checked": len(emails) + len(phones) + len(person_ids), "denied": denied}
