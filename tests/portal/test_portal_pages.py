"""The portal over HTTP against the real services (issue 19): sign-in and its cookies, CSRF,
idle timeout, TOTP, role refusals, form errors beside the field with the input kept,
languages, the CSV consent answer, the staff CLI. SPEC §5, §7; R6, R10, R11, R13."""
from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, UTC

import pyotp
import pytest

from services.portal import i18n
from shared.web.auth import Role
from tests.helpers import auth, eventually
from tests.portal.conftest import PASSWORD, add_staff
from tests.portal.helpers import PortalClient, new_account, new_person

fi = lambda key, **kw: i18n.translate("fi", key, **kw)  # noqa: E731



@pytest.fixture
async def client(stack):
    c = PortalClient(stack.portal_url)
    yield c
    await c.aclose()


async def test_portal_serves_health_readiness_and_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "portal"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    assert all(ready.json()["services"].values())
    await client.get("/login")
    assert "rekisteri_http_request_seconds" in (await client.get("/metrics")).text


async def test_staff_sign_in_sets_secure_httponly_samesite_cookies_and_rotates_csrf(stack, client):
    username, _ = await add_staff(stack, "register_owner")
    before = await client.csrf("/login")
    resp = await client.post("/login", {"username": username, "password": PASSWORD})
    assert resp.status_code == 303 and resp.headers["location"] == "/staff"
    session_cookie = next(h for h in client.set_cookie_headers if h.startswith("rk_session="))
    assert "Secure" in session_cookie and "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    assert client.cookies["rk_csrf"] != before  # a token seen before sign-in is not valid after it
    page = await client.get("/staff/persons")
    assert page.status_code == 200 and username in page.text


async def test_wrong_password_is_refused_with_the_username_kept_and_no_session(stack, client):
    username, _ = await add_staff(stack, "register_user")
    resp = await client.staff_sign_in(username, "wrong password here")
    assert resp.status_code == 401
    assert i18n.translate("fi", "login.wrong") in resp.text
    assert f'value="{username}"' in resp.text
    assert "rk_session" not in client.cookies


async def test_five_failed_sign_ins_lock_the_staff_account(stack, client):
    username, _ = await add_staff(stack, "register_user")
    for _ in range(5):
        await client.staff_sign_in(username, "wrong password here")
    resp = await client.staff_sign_in(username, PASSWORD)
    assert resp.status_code == 401 and i18n.translate("fi", "login.locked") in resp.text


async def test_a_form_posted_without_the_csrf_token_is_refused(stack, client):
    username, _ = await add_staff(stack, "register_owner")
    await client.staff_sign_in(username, PASSWORD)
    resp = await client.post("/logout", {}, csrf=False)
    assert resp.status_code == 403 and i18n.translate("fi", "error.csrf") in resp.text
    forged = await client.post("/logout", {"csrf": "forged-token"})
    assert forged.status_code == 403
    assert (await client.get("/staff/persons")).status_code == 200  # still signed in


async def test_totp_account_needs_the_current_code(stack, client):
    username, secret = await add_staff(stack, "billing", totp=True)
    without = await client.staff_sign_in(username, PASSWORD)
    assert without.status_code in (401, 422) and "rk_session" not in client.cookies
    wrong = await client.staff_sign_in(username, PASSWORD, totp="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert "rk_session" not in client.cookies and wrong.status_code == 401
    ok = await client.staff_sign_in(username, PASSWORD, totp=pyotp.TOTP(secret).now())
    assert ok.status_code == 303 and "rk_session" in client.cookies


async def test_idle_session_is_signed_out(stack, client):
    username, _ = await add_staff(stack, "register_owner")
    await client.staff_sign_in(username, PASSWORD)
    await stack.portal.pool.execute(
        "UPDATE web_sessions SET last_seen_at = now() - interval '1 hour' WHERE username = $1", username)
    resp = await client.get("/staff/persons")
    assert resp.status_code == 303 and resp.headers["location"] == "/login?expired=1"
    assert await stack.portal.pool.fetchval("SELECT count(*) FROM web_sessions WHERE username = $1", username) == 0


async def test_sign_out_ends_the_session(stack, client):
    username, _ = await add_staff(stack, "register_owner")
    await client.staff_sign_in(username, PASSWORD)
    cookie = client.cookies["rk_session"]
    assert (await client.post("/logout")).status_code == 303
    client.cookies["rk_session"] = cookie  # a copied cookie no longer signs anyone in
    assert (await client.get("/staff/persons")).headers["location"].startswith("/login")


async def test_a_role_without_the_right_gets_the_403_page(stack, client):
    """SPEC §5: the services refuse marketing the work queues; the portal says the role lacks the right."""
    username, _ = await add_staff(stack, "marketing")
    await client.staff_sign_in(username, PASSWORD)
    resp = await client.get("/staff/queues")
    assert resp.status_code == 403
    assert i18n.translate("fi", "error.forbidden.role") in resp.text
    assert "Traceback" not in resp.text


async def test_search_error_is_shown_next_to_the_field_with_the_input_kept(stack, client):
    username, _ = await add_staff(stack, "register_user")
    await client.staff_sign_in(username, PASSWORD)
    resp = await client.get("/staff/persons", params={"email": "not-an-email", "name": "Virta"})
    assert resp.status_code == 200
    assert re.search(r'id="f-email"[^>]*value="not-an-email"|value="not-an-email"[^>]*id="f-email"', resp.text) or \
        'value="not-an-email"' in resp.text
    assert 'id="email-error"' in resp.text and 'aria-invalid="true"' in resp.text
    assert 'value="Virta"' in resp.text


async def test_english_by_accept_language_and_by_choice(stack):
    english = PortalClient(stack.portal_url, **{"Accept-Language": "en-GB,en;q=0.9,fi;q=0.5"})
    try:
        page = await english.get("/login")
        assert '<html lang="en">' in page.text and "Staff sign-in" in page.text
    finally:
        await english.aclose()
    finnish = PortalClient(stack.portal_url)
    try:
        assert '<html lang="fi">' in (await finnish.get("/login")).text
        chosen = await finnish.get("/lang/en", params={"next": "/login"})
        assert chosen.headers["location"] == "/login"
        assert '<html lang="en">' in (await finnish.get("/login")).text
        evil = await finnish.get("/lang/fi", params={"next": "//evil.example/"})
        assert evil.headers["location"] == "/"
    finally:
        await finnish.aclose()


async def test_subject_edit_shows_the_services_field_error_and_keeps_the_input(stack, client):
    """R11: a person edits their own data; a bad email is named beside the field, the typed text kept."""
    contacts = stack.services["contacts"]
    person = await new_person(contacts)
    username = await new_account(contacts, person["person"]["id"], PASSWORD)
    assert (await client.subject_sign_in(username, PASSWORD)).status_code == 303
    resp = await client.post("/me/edit", {"first_name": "Testi", "last_name": person["person"]["last_name"],
                                          "title": "Uusi nimike", "expertise": "", "emails": "broken@@address",
                                          "phones": ""})
    assert resp.status_code == 422
    assert 'id="emails-error"' in resp.text and "broken@@address" in resp.text
    assert 'value="Uusi nimike"' in resp.text
    ok = await client.post("/me/edit", {"first_name": "Testi", "last_name": person["person"]["last_name"],
                                        "title": "Uusi nimike", "expertise": "", "emails": "uusi@example.fi",
                                        "phones": ""})
    assert ok.status_code == 303
    me = await contacts.http.get("/me", headers=auth(Role.subject, person_id=person["person"]["id"]))
    assert me.json()["person"]["emails"] == ["uusi@example.fi"] and me.json()["person"]["title"] == "Uusi nimike"


async def test_marketing_csv_is_answered_as_csv_with_the_ban(stack, client):
    """R8, R13: a banned email in an uploaded list comes back as not allowed."""
    banned, fresh = f"ban{uuid.uuid4().hex[:8]}@example.fi", f"ok{uuid.uuid4().hex[:8]}@example.fi"
    consent = stack.services["consent"]
    resp = await consent.http.post("/optouts", headers=auth(Role.register_owner), json={
        "emails": [banned], "purposes": ["direct_advertising"], "channels": ["email"], "method": "phone_call"})
    assert resp.status_code == 201, resp.text
    username, _ = await add_staff(stack, "marketing")
    await client.staff_sign_in(username, PASSWORD)
    csv_file = f"email,name\n{banned},A\n{fresh},B\n".encode()
    answer = await client.post("/staff/marketing", {"purpose": "direct_advertising", "channel": "email", "format": "csv"},
                               files={"file": ("list.csv", csv_file, "text/csv")})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.strip().splitlines()
    assert lines[0] == "line,kind,value,allowed,reason"
    assert lines[1].startswith(f"2,email,{banned},no,")
    assert lines[2] == f"3,email,{fresh},yes,no_ban"
    empty = await client.post("/staff/marketing", {"purpose": "direct_advertising", "channel": "email"},
                              files={"file": ("list.csv", b"", "text/csv")})
    assert empty.status_code == 422 and 'id="file-error"' in empty.text


async def test_staff_cli_adds_lists_and_disables_accounts(stack, monkeypatch, capsys):
    """`rekisteri staff add|list|disable` against the portal's schema; disabling ends sessions."""
    from shared.ops.cli import main

    monkeypatch.setenv("DATABASE_URL", stack.portal.settings.database_url)
    monkeypatch.setenv("ARGON2_TIME_COST", "1")
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "8192")
    username = f"cli-{uuid.uuid4().hex[:8]}"
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert await asyncio.to_thread(main, ["staff", "add", username, "--role", "register_user", "--password-stdin"]) == 0
    client = PortalClient(stack.portal_url)
    try:
        assert (await client.staff_sign_in(username, PASSWORD)).status_code == 303
        assert await asyncio.to_thread(main, ["staff", "list"]) == 0
        assert username in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["staff", "disable", username]) == 0
        assert (await client.get("/staff/persons")).status_code == 303  # its session ended
        monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
        assert await asyncio.to_thread(main, ["staff", "add", "x" + username, "--role", "register_user",
                                              "--password-stdin"]) == 2
    finally:
        await client.aclose()


async def test_a_subject_session_stores_no_token_and_signing_in_again_ends_the_old_session(stack, client):
    """R11: the session row names the person only; a new sign-in replaces the browser's session."""
    contacts = stack.services["contacts"]
    person = await new_person(contacts)
    username = await new_account(contacts, person["person"]["id"], PASSWORD)
    await client.subject_sign_in(username, PASSWORD)
    first = client.cookies["rk_session"]
    row = await stack.portal.pool.fetchrow("SELECT * FROM web_sessions WHERE person_id = $1",
                                           uuid.UUID(person["person"]["id"]))
    assert set(row.keys()) >= {"person_id", "role"} and not any("token" in k for k in row.keys())  # noqa: SIM118 - a Record iterates its values
    assert "ey" not in str(dict(row["data"]))  # no JWT kept in the session's data either
    assert (await client.get("/me")).status_code == 200
    await client.subject_sign_in(username, PASSWORD)
    assert client.cookies["rk_session"] != first
    assert await stack.portal.pool.fetchval("SELECT count(*) FROM web_sessions WHERE person_id = $1",
                                            uuid.UUID(person["person"]["id"])) == 1


async def test_rectification_asked_in_the_privacy_portal_is_decided_in_the_console(stack, client):
    """R14: the person asks for a correction; the register owner approves it from the work queue."""
    contacts = stack.services["contacts"]
    person = await new_person(contacts)
    pid = person["person"]["id"]
    username = await new_account(contacts, pid, PASSWORD)
    await client.subject_sign_in(username, PASSWORD)
    values = {"first_name": "Testi", "last_name": person["person"]["last_name"], "title": "Hankintapäällikkö",
              "expertise": "", "emails": person["person"]["emails"][0], "phones": ""}
    empty = await client.post("/me/rectification", {**values, "reason": ""})
    assert empty.status_code == 422 and 'id="reason-error"' in empty.text
    sent = await client.post("/me/rectification", {**values, "title": "Ostojohtaja", "reason": "Ylennys"})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/me/rectification?done=rectification")
    pending = await client.get("/me/rectification")
    assert fi("rect.status.pending") in pending.text and fi("field.title") in pending.text
    owner_name, _ = await add_staff(stack, "register_owner")
    owner = PortalClient(stack.portal_url)
    try:
        await owner.staff_sign_in(owner_name, PASSWORD)
        queue = await owner.get("/staff/queues")
        # The session's database is shared: older pending requests of other tests come first in the queue.
        own = await contacts.http.get("/me/rectifications", headers=auth(Role.subject, person_id=pid))
        rect_id = own.json()["rectifications"][0]["id"]
        assert f'href="/staff/rectifications/{rect_id}"' in queue.text
        page = await owner.get(f"/staff/rectifications/{rect_id}")
        assert "Ostojohtaja" in page.text and "Ylennys" in page.text
        decided = await owner.post(f"/staff/rectifications/{rect_id}/decision", {"approve": "yes", "reason": "Tarkistettu"})
        assert decided.status_code == 303
        again = await owner.post(f"/staff/rectifications/{rect_id}/decision", {"approve": "yes", "reason": "x"})
        assert again.status_code == 422  # already decided: the conflict is told on the form, no crash
    finally:
        await owner.aclose()
    me = await contacts.http.get("/me", headers=auth(Role.subject, person_id=pid))
    assert me.json()["person"]["title"] == "Ostojohtaja"
    # Issue 19: the person follows the outcome: status, the decision's reason and its date.
    for path in ("/me/rectification",):
        page = await client.get(path)
        row = re.search(r'<td class="rect-status status-approved">(.*?)</td>\s*<td>(.*?)</td><td class="rect-decision">(.*?)</td>',
                        page.text)
        assert row, page.text[-3000:]
        assert row.group(1) == fi("rect.status.approved") and row.group(3) == "Tarkistettu"
        assert row.group(2) == i18n.format_date(datetime.now(UTC))


async def test_subject_requests_and_downloads_the_access_report(stack, client):
    """R12: an authenticated self-service user asks for their data and downloads the report."""
    contacts = stack.services["contacts"]
    person = await new_person(contacts)
    username = await new_account(contacts, person["person"]["id"], PASSWORD)
    await client.subject_sign_in(username, PASSWORD)
    assert (await client.post("/me/access")).status_code == 303
    page = await client.get("/me/access")
    request_id = re.search(r"/me/access/([0-9a-f-]{36})/report|<td class=\"status\">", page.text)
    assert request_id is not None

    async def report_link() -> str | None:
        found = re.search(r'href="(/me/access/[0-9a-f-]{36}/report\?format=json)"', (await client.get("/me/access")).text)
        return found.group(1) if found else None
    link = await eventually(report_link, timeout=60, interval=0.3)
    report = await client.get(link)
    assert report.status_code == 200 and person["person"]["last_name"] in report.text
    assert "attachment" in report.headers["content-disposition"]
    html = await client.get(link.replace("format=json", "format=html"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


async def test_a_service_that_does_not_answer_gives_the_unavailable_page_not_a_trace(stack, infra, database_url):
    from services.portal.app import build_app
    from services.portal.settings import PortalSettings
    from tests.conftest import service_test_settings
    from tests.portal.conftest import free_port, serve, shutdown

    dead = f"http://127.0.0.1:{free_port()}"
    settings = PortalSettings(**service_test_settings(infra, database_url, rekisteri_dev_stack=True), portal_port=free_port(),
                              portal_contacts_url=dead, argon2_time_cost=1, argon2_memory_kib=8192,
                              argon2_parallelism=1)
    server = await serve(build_app(settings), settings.portal_port, lifespan="on")
    username, _ = await add_staff(stack, "register_user")
    broken = PortalClient(f"http://127.0.0.1:{settings.portal_port}")
    try:
        await broken.staff_sign_in(username, PASSWORD)
        page = await broken.get("/staff/persons", params={"name": "x"})
        assert page.status_code == 503 and i18n.translate("fi", "error.unavailable.text") in page.text
        assert "Traceback" not in page.text and "httpx" not in page.text
        assert (await broken.get("/readyz")).json()["services"]["contacts"] is False
    finally:
        await broken.aclose()
        await shutdown(server)


async def test_a_subject_activates_the_account_with_the_code_then_signs_in(stack, client):
    """R11 (issue 16, 19): staff open the account and get a single-use code; the person sets
    their own password on the portal's activation page, then signs in with it. A wrong code
    keeps the typed username and says so; the code works once."""
    from tests.portal.helpers import OWNER

    contacts = stack.services["contacts"]
    person = await new_person(contacts)
    username = f"act{uuid.uuid4().hex[:8]}"
    opened = await contacts.http.post(f"/persons/{person['person']['id']}/account", headers=OWNER,
                                      json={"username": username})
    code = opened.json()["activation_code"]
    await client.csrf("/me/activate")
    wrong = await client.post("/me/activate", {"username": username, "code": "not-the-code-123", "new_password": PASSWORD})
    assert wrong.status_code == 401 and username in wrong.text
    assert i18n.translate("fi", "activate.wrong") in wrong.text
    done = await client.post("/me/activate", {"username": username, "code": code, "new_password": PASSWORD})
    assert done.status_code in (302, 303) and done.headers["location"] == "/me/login?activated=1"
    again = await client.post("/me/activate", {"username": username, "code": code, "new_password": "someone else's"})
    assert again.status_code == 401
    signed_in = await client.subject_sign_in(username, PASSWORD)
    assert signed_in.status_code in (302, 303) and signed_in.headers["location"] == "/me"
