"""Finding 7 (issue 16; SPEC §7): tokens carry `iss` and `aud` and every service checks its
audience; a token longer-lived than its role allows (staff 12 h, service 30 days) is refused;
a self-service token dies on a password change, a disable and an erasure (token version)."""
from __future__ import annotations

import time
import uuid

import jwt

from shared.web.auth import mint_token
from tests.helpers import TEST_TOKEN_SECRET, eventually, open_account
from tests.security.conftest import FAST_HASHES, USER, new_person

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw(claims: dict) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "x", "role": "register_owner", "iat": now, "exp": now + 600, "iss": "rekisteri",
                       "aud": ["contacts", "consent", "retention", "billing"], **claims},
                      TEST_TOKEN_SECRET, algorithm="HS256")


async def test_a_token_works_only_at_the_services_it_is_for(start_service):
    contacts = await start_service("contacts")
    billing = await start_service("billing")
    for_billing = bearer(mint_token(TEST_TOKEN_SECRET, user="b", role="billing", audience=["billing"]))
    assert (await billing.http.get("/billing/invoices", headers=for_billing)).status_code == 200
    assert (await contacts.http.get("/marketing/export", headers=for_billing)).status_code == 401
    no_audience = raw({"role": "billing"})
    claims = jwt.decode(no_audience, options={"verify_signature": False})
    del claims["aud"]
    unaddressed = jwt.encode(claims, TEST_TOKEN_SECRET, algorithm="HS256")
    assert (await billing.http.get("/billing/invoices", headers=bearer(unaddressed))).status_code == 401
    foreign = raw({"role": "billing", "iss": "someone-else"})
    assert (await billing.http.get("/billing/invoices", headers=bearer(foreign))).status_code == 401


LIFETIMES = [  # (role, lifetime, accepted)
    ("register_owner", 100 * 365 * 24 * 3600, False),
    ("register_owner", 13 * 3600, False),
    ("register_owner", 11 * 3600, True),
    ("service", 29 * 24 * 3600, True),
    ("service", 31 * 24 * 3600, False),
]


async def test_a_token_longer_lived_than_its_role_allows_is_refused(start_service):
    """Staff at most 12 h, service 30 days: a 100-year `exp` is no token."""
    contacts = await start_service("contacts")
    outcomes = []
    for role, lifetime_s, _ok in LIFETIMES:
        now = int(time.time())
        headers = bearer(raw({"role": role, "iat": now, "exp": now + lifetime_s}))
        if role == "service":
            resp = await contacts.http.post("/events/contact-upserted", json={"events": [{}]}, headers=headers)
        else:
            resp = await contacts.http.get(f"/persons/{uuid.uuid4()}", headers=headers)
        outcomes.append((role, lifetime_s, resp.status_code != 401))
    assert outcomes == LIFETIMES


async def subject_token(contacts) -> tuple[uuid.UUID, str, str]:
    pid = await new_person(contacts)
    username = f"u-{uuid.uuid4().hex[:8]}"
    assert (await open_account(contacts.http, pid, username, PASSWORD, USER)).status_code == 200
    resp = await contacts.http.post("/auth/login", json={"username": username, "password": PASSWORD})
    return pid, username, resp.json()["token"]


async def test_a_password_change_revokes_earlier_self_service_tokens(contacts):
    _pid, username, token = await subject_token(contacts)
    second = (await contacts.http.post("/auth/login", json={"username": username, "password": PASSWORD})).json()
    assert (await contacts.http.get("/me", headers=bearer(token))).status_code == 200
    changed = await contacts.http.post("/me/password", headers=bearer(token), json={
        "current_password": PASSWORD, "new_password": "a brand new password"})
    assert changed.status_code == 204
    for old in (token, second["token"]):
        assert (await contacts.http.get("/me", headers=bearer(old))).status_code == 401
    fresh = (await contacts.http.post("/auth/login", json={"username": username,
                                                           "password": "a brand new password"})).json()["token"]
    assert (await contacts.http.get("/me", headers=bearer(fresh))).status_code == 200


async def test_disabling_the_account_or_erasing_it_revokes_its_tokens(contacts):
    pid, _username, token = await subject_token(contacts)
    assert (await contacts.http.post(f"/persons/{pid}/account/disable", headers=USER)).status_code == 200
    assert (await contacts.http.get("/me", headers=bearer(token))).status_code == 401
    pid, _username, token = await subject_token(contacts)
    await contacts.runtime.pool.execute("DELETE FROM accounts WHERE person_id = $1", pid)  # what erasure does
    assert (await contacts.http.get("/me", headers=bearer(token))).status_code == 401


async def test_a_password_change_or_a_disable_revokes_the_old_token_at_consent_too(start_service):
    """Consent accepts self-service tokens too (`aud` contacts and consent): it learns of every
    revocation from `subject-tokens-revoked` and refuses the same tokens contacts does. On the
    old code consent kept accepting a revoked token until it expired."""
    contacts = await start_service("contacts", **FAST_HASHES)
    consent = await start_service("consent")
    pid, username, token = await subject_token(contacts)
    assert (await consent.http.get("/me/consents", headers=bearer(token))).status_code == 200
    assert (await contacts.http.post("/me/password", headers=bearer(token), json={
        "current_password": PASSWORD, "new_password": "a brand new password"})).status_code == 204

    async def consent_refuses(old: str) -> bool:
        return (await consent.http.get("/me/consents", headers=bearer(old))).status_code == 401

    await eventually(lambda: consent_refuses(token))
    fresh = (await contacts.http.post("/auth/login", json={"username": username,
                                                           "password": "a brand new password"})).json()["token"]
    assert (await consent.http.get("/me/consents", headers=bearer(fresh))).status_code == 200
    assert (await contacts.http.post(f"/persons/{pid}/account/disable", headers=USER)).status_code == 200
    await eventually(lambda: consent_refuses(fresh))


async def test_an_erased_persons_token_is_refused_at_consent(start_service):
    consent = await start_service("consent")
    pid = uuid.uuid4()
    token = mint_token(TEST_TOKEN_SECRET, user=f"person:{pid}", role="subject", person_id=pid,
                       audience=["contacts", "consent"], token_version=1)
    assert (await consent.http.get("/me/consents", headers=bearer(token))).status_code == 200
    await consent.runtime.pool.execute("INSERT INTO erased_person (person_id) VALUES ($1)", pid)  # contact-erased
    assert (await consent.http.get("/me/consents", headers=bearer(token))).status_code == 401
