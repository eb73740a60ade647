"""Every endpoint × every role (SPEC §5, R10, issue 9), table-driven.

`EXPECTED` is the specification written out: which roles SPEC §5 grants on each endpoint of
each service. The test reads the roles each route really admits from its `require(...)` guard
(`dependency.allowed_roles`) and checks they are exactly the table; then calls every endpoint
with every role and checks that a granted role gets past the guard, every other role gets 403
with its denial in that service's `audit_log` (outcome 'denied'), and no token gets 401.

How SPEC §5 reads here:
- `register_owner`: all register data, including passivated persons, audit, access requests
  (recording them and deciding on chargeable ones), holds and retention reports, and reads of
  billing data. Writing billing data (meters, price plans, closing a period,
  credit notes) is accounting work of the `billing` role; the owner reads it.
- `register_user`: active register data (persons, organisations, relationships, assignments,
  rectifications, a person's consents, checks, opt-outs); nothing of retention or billing.
- `marketing`: consent checks, the marketing register, and contacts' marketing export only.
- `billing`: billing data only. `subject`: only their own data (`/me...`, their own consents,
  their own access requests and reports; whose request it is, the route itself checks).
- `service`: machine publishers: the durable event accept, consent checks and opt-outs
  (marketing tools, web forms).
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Iterator

import pytest

from shared.web.auth import Role
from shared.settings import SERVICE_NAMES
from tests.helpers import auth
from tests.integration.test_fuzz_isolated import isolated  # noqa: F401 - fixture

OWNER, USER, MARKETING, BILLING, SUBJECT, SERVICE = (
    Role.register_owner, Role.register_user, Role.marketing, Role.billing, Role.subject, Role.service)
STAFF = {OWNER, USER}
EVENT_ACCEPT = {("POST", "/events/{topic}"): {SERVICE}}

EXPECTED: dict[str, dict[tuple[str, str], set[Role]]] = {
    "contacts": {
        **EVENT_ACCEPT,
        ("POST", "/organisations"): STAFF,
        ("GET", "/organisations/{org_id}"): STAFF,
        ("POST", "/persons"): STAFF,
        ("GET", "/persons"): STAFF,
        ("GET", "/persons/{person_id}"): STAFF,
        ("PATCH", "/persons/{person_id}"): STAFF,
        ("POST", "/persons/{person_id}/records"): STAFF,
        ("POST", "/persons/{person_id}/relationships"): STAFF,
        ("POST", "/relationships/{rel_id}/end"): STAFF,
        ("POST", "/assignments"): STAFF,
        ("GET", "/assignments/{assignment_id}"): STAFF,
        ("POST", "/assignments/{assignment_id}/end"): STAFF,
        ("POST", "/persons/{person_id}/account"): STAFF,
        ("POST", "/persons/{person_id}/account/disable"): STAFF,
        ("POST", "/auth/reauthenticate"): {SUBJECT},
        ("POST", "/persons/{person_id}/rectifications"): STAFF,
        ("GET", "/rectifications"): STAFF,
        ("GET", "/rectifications/{rect_id}"): STAFF,
        ("POST", "/rectifications/{rect_id}/decision"): STAFF,
        ("GET", "/marketing/export"): {MARKETING, OWNER},
        ("GET", "/audit/persons/{person_id}"): {OWNER},
        ("GET", "/me"): {SUBJECT},
        ("PATCH", "/me"): {SUBJECT},
        ("POST", "/me/password"): {SUBJECT},
        ("POST", "/me/rectifications"): {SUBJECT},
        ("GET", "/me/rectifications"): {SUBJECT},
        ("POST", "/access-requests"): {OWNER},
        ("GET", "/access-requests"): {OWNER},
        ("GET", "/access-requests/{request_id}"): {OWNER, SUBJECT},
        ("POST", "/access-requests/{request_id}/decision"): {OWNER},
        ("GET", "/access-requests/{request_id}/report"): {OWNER, SUBJECT},
        ("POST", "/me/access-requests"): {SUBJECT},
        # SPEC §10: request deadlines, identity codes, portability, Art. 30 record, processors
        ("GET", "/requests"): {OWNER},
        ("GET", "/requests/{request_id}"): {OWNER},
        ("POST", "/requests/{request_id}/extend"): {OWNER},
        # Objections and erasure on request (issue 14): the person, staff for objections, the owner decides.
        ("POST", "/persons/{person_id}/objections"): STAFF,
        ("POST", "/me/objections"): {SUBJECT},
        ("POST", "/objections/{request_id}/decision"): {OWNER},
        ("POST", "/persons/{person_id}/erasure-requests"): {OWNER},
        ("POST", "/me/erasure-requests"): {SUBJECT},
        ("POST", "/erasure-requests/{request_id}/decision"): {OWNER},
        ("POST", "/requests/{request_id}/identity-code"): {OWNER},
        ("POST", "/requests/{request_id}/verify"): {OWNER},
        ("GET", "/reports/overdue-requests"): {OWNER},
        ("POST", "/me/export"): {SUBJECT},
        ("POST", "/persons/{person_id}/export"): {OWNER},
        ("GET", "/exports/{export_id}"): {OWNER, SUBJECT},
        ("GET", "/processing-record"): {OWNER},
        ("GET", "/processors"): {OWNER},
        ("POST", "/processors"): {OWNER},
        ("PUT", "/processors/{processor_id}"): {OWNER},
        ("DELETE", "/processors/{processor_id}"): {OWNER},
    },
    "consent": {
        **EVENT_ACCEPT,
        ("POST", "/checks"): {OWNER, USER, MARKETING, SERVICE},
        ("POST", "/checks/batch"): {OWNER, USER, MARKETING, SERVICE},
        ("GET", "/persons/{person_id}/consents"): STAFF | {SUBJECT},
        ("POST", "/persons/{person_id}/consents"): STAFF | {SUBJECT},
        ("GET", "/me/consents"): {SUBJECT},
        ("POST", "/me/consents"): {SUBJECT},
        ("POST", "/optouts"): STAFF | {SERVICE},
        ("GET", "/marketing-register"): {OWNER, MARKETING},
        # SPEC §10: proof of consent
        ("POST", "/notices"): {OWNER},
        ("GET", "/persons/{person_id}/consent-records"): STAFF | {SUBJECT},
        ("GET", "/persons/{person_id}/consents/{consent_id}/receipt"): STAFF | {SUBJECT},
    },
    "retention": {
        **EVENT_ACCEPT,
        ("POST", "/holds"): {OWNER},
        ("DELETE", "/holds/{hold_id}"): {OWNER},
        ("GET", "/reports/due"): {OWNER},
        ("GET", "/reports/held"): {OWNER},
        ("GET", "/reports/overdue"): {OWNER},
        ("GET", "/reports/blocked"): {OWNER},
        ("GET", "/reports/summary"): {OWNER},
        ("GET", "/evidence/{person_id}"): {OWNER},
        ("GET", "/persons/{person_id}/retention"): {OWNER, USER, SUBJECT},  # issue 14: passive persons owner-only; a subject their own
    },
    "billing": {
        **EVENT_ACCEPT,
        ("PUT", "/billing/meters/{name}"): {BILLING},
        ("GET", "/billing/meters"): {BILLING, OWNER},
        ("PUT", "/billing/customers/{customer_id}/plan"): {BILLING},
        ("GET", "/billing/customers/{customer_id}/plan"): {BILLING, OWNER},
        ("POST", "/billing/periods/{period}/close"): {BILLING},
        ("GET", "/billing/invoices"): {BILLING, OWNER},
        ("GET", "/billing/invoices/{invoice_id}"): {BILLING, OWNER},
        ("POST", "/billing/invoices/{invoice_id}/credit-notes"): {BILLING},
        ("GET", "/billing/customers/{customer_id}/usage"): {BILLING, OWNER},
        ("GET", "/billing/customers/{customer_id}/plan/versions"): {BILLING, OWNER},
        ("PUT", "/billing/customers/{customer_id}"): {BILLING},
        ("GET", "/billing/customers/{customer_id}"): {BILLING, OWNER},
        ("GET", "/billing/receivables"): {BILLING, OWNER},
    },
}
# Routes without a role guard: operations, API documents, and the login that mints a subject token.
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/asyncapi.json", "/docs",
              "/docs/oauth2-redirect", "/redoc"}
# A published privacy-notice text is public (SPEC §10: the text a consent refers to).
OPEN_BY_SERVICE = {"contacts": {("POST", "/auth/login"), ("POST", "/auth/activate")},
                   "consent": {("GET", "/notices/{version}")}}
# Path parameters that are not ids: a value the route accepts, harmless if a granted role runs it
# (2030-01 has not ended, so closing it is a 409 that changes nothing).
PATH_VALUES = {"topic": "relationship-ended", "period": "2030-01", "name": "acl_probe_meter", "consent_id": "1"}


def flat_routes(app: Any) -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, dependant) of every route, routers included at any depth."""
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield context.path, set(context.methods or ()), context.dependant
        else:
            yield route.path, set(getattr(route, "methods", None) or ()), getattr(route, "dependant", None)


def guards_of(dependant: Any) -> list[frozenset[Role]]:
    found: list[frozenset[Role]] = []

    def walk(dep: Any) -> None:
        for sub in dep.dependencies:
            roles = getattr(sub.call, "allowed_roles", None)
            if roles is not None:
                found.append(frozenset(roles))
            walk(sub)

    if dependant is not None:
        walk(dependant)
    return found


def actual_table(app: Any) -> tuple[dict[tuple[str, str], set[Role]], set[tuple[str, str]]]:
    guarded: dict[tuple[str, str], set[Role]] = {}
    open_routes: set[tuple[str, str]] = set()
    for path, methods, dependant in flat_routes(app):
        guards = guards_of(dependant)
        for method in methods - {"HEAD"}:
            if not guards:
                open_routes.add((method, path))
                continue
            assert len(guards) == 1, f"{method} {path}: one role guard per route, found {len(guards)}"
            guarded[(method, path)] = set(guards[0])
    return guarded, open_routes


def concrete(path: str, person_id: uuid.UUID) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return PATH_VALUES.get(name, str(person_id if name == "person_id" else uuid.uuid4()))
    return re.sub(r"\{(\w+)\}", value, path)


async def call(client: Any, method: str, url: str, headers: dict[str, str]) -> Any:
    body = None if method in ("GET", "DELETE") else {}
    return await client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_each_route_admits_exactly_the_roles_spec_5_grants(isolated, service):
    """R10/SPEC §5: the guards in the code are the table in the spec, and nothing else is open."""
    guarded, open_routes = actual_table(isolated.apps[service])
    assert guarded == EXPECTED[service]
    unexpected_open = {r for r in open_routes if r[1] not in OPEN_PATHS} - OPEN_BY_SERVICE.get(service, set())
    assert unexpected_open == set(), f"routes without a role guard: {sorted(unexpected_open)}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_every_endpoint_by_every_role(isolated, service):
    """Granted roles pass the guard; every other role gets 403 and an audited denial (SPEC §5, R10);
    no token gets 401."""
    client = isolated.http[service]
    pool = isolated.runtime(service).pool
    wrong: list[str] = []
    for (method, path), granted in sorted(EXPECTED[service].items()):
        person_id = uuid.uuid4()
        url = concrete(path, person_id)
        anonymous = await call(client, method, url, {})
        if anonymous.status_code != 401 or anonymous.json().get("error") != "unauthenticated":
            wrong.append(f"{method} {path} without a token: {anonymous.status_code}")
        for role in Role:
            user = f"acl-{uuid.uuid4().hex[:12]}"
            headers = auth(role, user=user, person_id=person_id if role is SUBJECT else None)
            response = await call(client, method, url, headers)
            if role in granted:
                if response.status_code in (401, 403) or response.status_code >= 500:
                    wrong.append(f"{method} {path} as granted {role.value}: {response.status_code}")
                continue
            denials = await pool.fetch("SELECT action, role, outcome FROM audit_log WHERE actor = $1", user)
            if response.status_code != 403 or response.json().get("error") != "forbidden":
                wrong.append(f"{method} {path} as {role.value}: {response.status_code}, expected 403")
            elif [(d["role"], d["outcome"]) for d in denials] != [(role.value, "denied")]:
                wrong.append(f"{method} {path} as {role.value}: denial audit rows {[dict(d) for d in denials]}")
            elif not denials[0]["action"].startswith(method):
                wrong.append(f"{method} {path} as {role.value}: audit action {denials[0]['action']!r}")
    assert wrong == []


async def test_a_subject_reads_and_changes_only_their_own_consents(isolated):
    """R11: a self-service token for one person is refused another person's consents, audited."""
    client, pool = isolated.http["consent"], isolated.runtime("consent").pool
    me, other = uuid.uuid4(), uuid.uuid4()
    user = f"person:{me}"
    headers = auth(SUBJECT, user=user, person_id=me)
    change = {"purpose": "direct_advertising", "channel": "email", "decision": "ban", "method": "web"}
    assert (await client.get(f"/persons/{other}/consents", headers=headers)).status_code == 403
    assert (await client.post(f"/persons/{other}/consents", json=change, headers=headers)).status_code == 403
    own = await client.post(f"/persons/{me}/consents", json=change, headers=headers)
    assert own.status_code == 200 and own.json()["status"] == "banned"
    denied = await pool.fetch("SELECT person_id FROM audit_log WHERE actor = $1 AND outcome = 'denied'", user)
    assert [r["person_id"] for r in denied] == [other, other]


async def test_forged_and_expired_tokens_get_401_everywhere(isolated):
    """SPEC §7: a token signed with another secret, or expired, is no token."""
    from shared.web.auth import mint_token

    forged = mint_token("not-the-register-secret-at-all-0123456789", user="x", role=OWNER)
    expired = mint_token(isolated.runtime("contacts").settings.rekisteri_token_secret, user="x", role=OWNER, ttl_s=-10)
    for service in SERVICE_NAMES:
        for token in (forged, expired, "garbage"):
            (method, path), _ = sorted(EXPECTED[service].items())[-1]
            response = await call(isolated.http[service], method, concrete(path, uuid.uuid4()),
                                  {"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (service, path, response.status_code)
