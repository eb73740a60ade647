"""An in-memory stand-in for consent's storage (what its handlers call through `ctx.store`)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from services.consent.storage import Change, Evidence
from shared.privacy import ContactPointDigests, StoredDigest


@dataclass
class ConsentStore:
    states: dict[tuple[uuid.UUID, str, str], str] = field(default_factory=dict)
    points: dict[bytes, set[uuid.UUID]] = field(default_factory=dict)  # digest → persons
    kinds: dict[bytes, str] = field(default_factory=dict)
    suppressed: set[tuple[bytes, str, str]] = field(default_factory=set)  # digest, purpose, channel
    erased: set[uuid.UUID] = field(default_factory=set)
    passive: set[uuid.UUID] = field(default_factory=set)
    marketing: set[uuid.UUID] = field(default_factory=set)
    token_floors: dict[uuid.UUID, tuple[int, bool]] = field(default_factory=dict)  # person → (min version, disabled)

    async def is_erased(self, person_id) -> bool:
        return person_id in self.erased

    async def suppression_digests(self, chains: Any) -> ContactPointDigests:
        return ContactPointDigests(chains.keyring, [chains.keyring.current_chain])

    async def link_contact_points(self, person_id, points: Sequence[StoredDigest]) -> None:
        for point in points:
            self.points.setdefault(point.digest, set()).add(person_id)
            self.kinds[point.digest] = point.kind

    async def persons_with(self, digests) -> list[uuid.UUID]:
        return sorted({p for d in digests for p in self.points.get(d, ())})

    def _points_of(self, person_id) -> list[bytes]:
        return [d for d, persons in self.points.items() if person_id in persons]

    async def record_bans(self, triples, evidence: Evidence) -> list[Change]:
        changes = []
        for person_id, purpose, channel in triples:
            if person_id in self.erased:
                continue
            previous = self.states.get((person_id, purpose, channel))
            if previous != "banned":
                self.states[(person_id, purpose, channel)] = "banned"
                changes.append(Change(person_id, purpose, channel, previous))
            self.suppressed |= {(d, purpose, channel) for d in self._points_of(person_id)}
        return changes

    async def suppress_digests(self, points, purposes, channels, source) -> None:
        self.suppressed |= {(p.digest, pu, ch) for p in points for pu in purposes for ch in channels}

    async def suppress_points_of(self, person_ids, source) -> None:
        for (person_id, purpose, channel), status in self.states.items():
            if person_id in person_ids and status == "banned":
                self.suppressed |= {(d, purpose, channel) for d in self._points_of(person_id)}

    async def suppressed_pairs_of(self, person_id) -> list[tuple[str, str]]:
        mine = set(self._points_of(person_id))
        return sorted({(pu, ch) for d, pu, ch in self.suppressed if d in mine})

    async def stored_digests_of(self, person_ids) -> list[tuple[str, bytes]]:
        return [("fake", d) for p in person_ids for d in self._points_of(p)]

    async def erase_person(self, person_id) -> None:
        self.states = {k: v for k, v in self.states.items() if k[0] != person_id}
        for persons in self.points.values():
            persons.discard(person_id)
        self.marketing.discard(person_id)
        self.passive.discard(person_id)
        self.token_floors.pop(person_id, None)
        self.erased.add(person_id)

    async def raise_token_floor(self, person_id, min_version: int, disabled: bool) -> None:
        version, was_disabled = self.token_floors.get(person_id, (0, False))
        self.token_floors[person_id] = (max(version, min_version), was_disabled or disabled)

    async def add_to_marketing_register(self, person_id) -> None:
        self.marketing.add(person_id)

    async def set_passive(self, person_id, passive: bool) -> None:
        (self.passive.add if passive else self.passive.discard)(person_id)

    async def states_of(self, person_id) -> list[dict[str, Any]]:
        return [dict(purpose=pu, channel=ch, status=st, source="test", method="test", actor="test",
                     notice_version=None, recorded_at=None)
                for (p, pu, ch), st in sorted(self.states.items(), key=str) if p == person_id]

    async def history_of(self, person_id) -> list[dict[str, Any]]:
        return []

    async def in_marketing_register_since(self, person_id) -> Any:
        return None

    async def suppressions_of(self, digests) -> list[dict[str, Any]]:
        return [dict(purpose=pu, channel=ch, source="test", recorded_at=None)
                for d, pu, ch in sorted(self.suppressed) if d in digests]
