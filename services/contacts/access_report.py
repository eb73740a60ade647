"""Pure rules of the right of access (R12): what contacts itself holds about the person (its
slice of the report), when a request is chargeable, how far the other services have answered,
and the one assembled report. No I/O: the HTTP routes and the event handler call these.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from services.contacts.domain import PERSON_FIELDS, SECTION_PURPOSES
from shared.access import access_item

SERVICE = "contacts"
# Produced by the register itself (state, legal basis, timestamps), not received from anyone.
REGISTER = "register"
VERIFICATIONS = ("signed_letter", "in_person")


# ---- twelve months, one free request ---------------------------------------------------

def twelve_months_before(now: datetime) -> datetime:
    """The same moment a calendar year earlier (29 February → 28 February)."""
    try:
        return now.replace(year=now.year - 1)
    except ValueError:
        return now.replace(year=now.year - 1, day=28)


def is_chargeable(earlier_requests: Iterable[datetime], now: datetime) -> bool:
    """R12: one request within twelve months is free; any further one is chargeable."""
    cutoff = twelve_months_before(now)
    return any(cutoff < at <= now for at in earlier_requests)


def chargeable_because(earlier: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
    """Why a request is chargeable (SPEC §10): the earlier free request within twelve months
    (its id and date), else the latest earlier one in that window; None when it is free.
    `earlier` rows carry `id`, `created_at` and `chargeable`."""
    cutoff = twelve_months_before(now)
    window = sorted((r for r in earlier if cutoff < r["created_at"] <= now), key=lambda r: r["created_at"])
    if not window:
        return None
    free = [r for r in window if not r["chargeable"]]
    chosen = (free or window)[-1]
    return {"request_id": chosen["id"], "received_at": chosen["created_at"], "was_free": not chosen["chargeable"]}


# ---- progress of a request -------------------------------------------------------------

def progress(expected: Iterable[str], answered: Iterable[str], asked_at: datetime | None, now: datetime,
             timeout_s: float) -> dict[str, Any]:
    """Which services still owe their slice, and whether they are late (R12: the report waits
    for every service and says which one is late)."""
    missing = sorted(set(expected) - set(answered))
    late = bool(missing) and asked_at is not None and (now - asked_at).total_seconds() > timeout_s
    return {"answered": sorted(set(answered)), "missing": missing, "late": late,
            "late_services": missing if late else []}


def is_complete(expected: Iterable[str], answered: Iterable[str]) -> bool:
    return set(expected) <= set(answered)


# ---- contacts' own slice ---------------------------------------------------------------

def _purpose(purposes: Iterable[str] | str | None) -> str | None:
    if purposes is None or isinstance(purposes, str):
        return purposes
    return ",".join(sorted(purposes)) or None


def person_items(everything: dict[str, Any]) -> list[dict[str, Any]]:
    """Every field of `storage.person_everything`, each with its source (R4) and purpose (R1)."""
    person, sources = everything["person"], everything["field_sources"]
    person_purpose = _purpose(person["purposes"])
    section = {k: _purpose(v) for k, v in SECTION_PURPOSES.items()}
    items = [access_item("basic_data", f, person[f], source=sources.get(f, {}).get("source"), purpose=person_purpose,
                         recorded_at=sources.get(f, {}).get("recorded_at"))
             for f in PERSON_FIELDS if person.get(f) not in (None, [], {})]
    items += [access_item("registration", f, person[f], source=REGISTER, purpose=person_purpose)
              for f in ("id", "legal_basis", "purposes", "lifecycle_state", "external_ref", "created_at",
                        "state_changed_at") if person.get(f) not in (None, [])]
    org = everything.get("organisation")
    if org:
        items += [access_item("organisation", f, org[f], source=org["source"], purpose=section["organisation"])
                  for f in ("name", "business_id", "address", "phone") if org.get(f)]
    account = everything.get("account")
    if account:
        items += [access_item("account", f, account[f], source=sources.get(f, {}).get("source") or REGISTER,
                              purpose=section["account"])
                  for f in ("username", "nickname", "identifiers", "created_at") if account.get(f)]
        # R3: the password exists only as a slow salted hash; the report says so, and no more.
        items.append(access_item("account", "password", "argon2id hash, not readable",
                                 source=sources.get("password", {}).get("source"), purpose=section["account"],
                                 recorded_at=account.get("password_changed_at")))
    for rel in everything.get("relationships", []):
        items.append(access_item("relationship", rel["kind"], {k: rel[k] for k in (
            "id", "organisation_id", "started_at", "ended_at")}, source=rel["source"],
            purpose=section["relationships"], recorded_at=rel["started_at"]))
    for asg in everything.get("assignments", []):
        items.append(access_item("assignment", asg["given_by"], {k: asg[k] for k in (
            "id", "title", "status", "started_at", "ended_at")}, source=asg.get("source") or "service_event",
            purpose=section["assignments"], recorded_at=asg["started_at"]))
    for rec in everything.get("service_records", []):
        items.append(access_item("service_use", rec["kind"], {"description": rec["description"],
                                                              "occurred_at": rec["occurred_at"]},
                                 source=rec["source"], purpose=_purpose(rec["purposes"]),
                                 recorded_at=rec["created_at"]))
    items += [access_item("marketing", "ban", purpose_banned, source="consent", purpose=section["marketing_bans"])
              for purpose_banned in everything.get("marketing_bans", [])]
    for rect in everything.get("rectifications", []):
        items.append(access_item("rectification", rect["status"], {k: rect[k] for k in (
            "id", "changes", "reason", "decision_reason", "decided_at")}, source="person",
            purpose=section["rectifications"], recorded_at=rect["created_at"]))
    return items


def suppression_items(points: list[str], purposes_of: dict[str, list[str]]) -> list[dict[str, Any]]:
    """R8: contacts keeps a digest of each banned contact point so a re-import stays banned."""
    return [access_item("suppression_record", "contact_point", point, source="consent", purpose="suppression",
                        banned_purposes=sorted(purposes_of[point]), stored_as="keyed hash (HMAC-SHA256)")
            for point in points if purposes_of.get(point)]


def processor_items(processors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Art. 15(1)(c): the recipients, here the processors working on the register's behalf."""
    return [access_item("processor", p["name"], {"business_id": p["business_id"], "service": p["service"],
                                                 "location": p["location"]},
                        source=REGISTER, purpose=",".join(p["purposes"])) for p in processors]


def earlier_request_items(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [access_item("access_request", r["channel"], {"id": r["id"], "status": r["status"],
                                                          "chargeable": r["chargeable"]},
                        source="person", purpose="access_request", recorded_at=r["created_at"])
            for r in requests]


# ---- the assembled report ----------------------------------------------------------------

ITEM_KEYS = ("category", "field", "value", "source", "purpose", "recorded_at", "type")


def _normalised(service: str, item: dict[str, Any]) -> dict[str, Any]:
    """Every item carries service, category, field, value, source and purpose (R12, R1, R4).
    An item in another shape keeps all it says: its other keys become the value."""
    out = dict(item)
    if "value" not in out:
        out = {k: v for k, v in out.items() if k in ITEM_KEYS}
        out["value"] = {k: v for k, v in item.items() if k not in ITEM_KEYS}
    out.setdefault("category", out.get("type") or "record")
    out.setdefault("field", out["category"])
    out["source"] = out.get("source") or "unknown"
    out["purpose"] = _purpose(out.get("purpose")) or "unknown"
    return {"service": service, **out}


def assemble(request: dict[str, Any], parts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One machine-readable report from every service's part (R12)."""
    services = sorted(parts, key=lambda s: (s != SERVICE, s))
    return {
        "request_id": request["id"],
        "person_id": request["person_id"],
        "requested_at": request["created_at"],
        "fulfilled_at": request["fulfilled_at"],
        "identity_verified": {"method": request["channel"], "by": request["verified_by"]},
        "chargeable": request["chargeable"],
        "decision": request["decision"],
        "services": services,
        "items": [_normalised(s, item) for s in services for item in parts[s]],
    }
