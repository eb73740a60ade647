"""Every word of the portal exists in Finnish and English (issue 19): a key a page uses, or a
value a service can send that a page translates, without both translations fails here."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.portal import i18n, web
from services.portal.pages_console import CHANNELS, PURPOSES
from services.portal.pages_privacy import EDITABLE
from services.portal.retention_view import STATES as RETENTION_STATES
from shared.messaging.events import DataSource, LegalBasis, ProcessingPurpose

PORTAL = Path(web.__file__).parent
LITERAL = re.compile(r"""["']([a-z_]+(?:\.[a-z_]+)+)["']""")
PREFIXES = {key.split(".")[0] for key in i18n.M}


def used_keys() -> set[str]:
    """Every quoted dotted string in the templates and the page modules that starts like a key."""
    keys = set()
    for path in [*PORTAL.glob("templates/*.html"), *PORTAL.glob("*.py")]:
        for match in LITERAL.finditer(path.read_text()):
            key = match.group(1)
            if key.split(".")[0] in PREFIXES and not key.endswith((".html", ".py")) \
                    and not key.startswith(("services.", "shared.")):
                keys.add(key)
    return keys


def test_every_entry_has_finnish_and_english():
    for key, (fi, en) in i18n.M.items():
        assert fi.strip() and en.strip(), key
        assert set(re.findall(r"{(\w+)}", fi)) == set(re.findall(r"{(\w+)}", en)), f"{key}: placeholders differ"


def test_every_key_a_page_uses_is_in_the_catalogue():
    missing = sorted(k for k in used_keys() if k not in i18n.M)
    assert not missing, f"untranslated keys: {missing}"


@pytest.mark.parametrize("prefix, values", [
    ("purpose", PURPOSES), ("channel", CHANNELS), ("source", [s.value for s in DataSource]),
    ("basis", [b.value for b in LegalBasis]), ("ppurpose", [p.value for p in ProcessingPurpose]),
    ("state", ["prospect", "active", "ended", "passive", "erased", "marketing"]), ("rstate", RETENTION_STATES),
    ("reason", ["erased", "banned", "suppression_list", "granted", "no_ban", "invalid_contact_point"]),
    ("consent.status", ["granted", "banned", "none"]), ("rect.status", ["pending", "approved", "rejected"]),
    ("access.status", ["awaiting_identity", "awaiting_decision", "collecting", "fulfilled", "refused"]),
    ("access.channel", ["signed_letter", "in_person", "self_service"]),
    ("access.decision", ["charge", "waive", "refuse"]), ("action", ["passivate", "dispose", "erase", "transfer_to_marketing"]),
    ("role", ["register_owner", "register_user", "marketing", "billing"]),
    ("nav", ["search", "queues", "marketing", "billing"]), ("audit", ["allowed", "denied", "locked"]),
    ("me.nav", ["data", "edit", "marketing", "access", "rectification", "password"]),
    ("me.done", ["saved", "rectification", "password"]), ("billing.kind", ["invoice", "credit_note"]),
    ("relationship", ["customer", "prospect"]), ("marketing.kind", ["email", "phone"]), ("given_by", ["principal", "partner", "customer"]),
    ("field", [*EDITABLE, "other_contact", "organisation_id", "username", "nickname"]),
])
def test_every_value_a_page_translates_has_a_translation(prefix, values):
    missing = [v for v in values if f"{prefix}.{v}" not in i18n.M]
    assert not missing, f"{prefix}: no translation for {missing}"


def test_a_missing_key_is_recorded_not_shown_as_a_crash():
    i18n.MISSING.discard("no.such.key")
    assert i18n.translate("fi", "no.such.key") == "no.such.key"
    assert "no.such.key" in i18n.MISSING
    i18n.MISSING.discard("no.such.key")


@pytest.mark.parametrize("choice, header, expected", [
    (None, None, "fi"), (None, "en-US,en;q=0.9", "en"), (None, "sv-FI, fi;q=0.8, en;q=0.5", "fi"),
    (None, "de, en;q=0.1", "en"), ("en", "fi", "en"), ("xx", "en", "en"), (None, "en;q=0, fi;q=0.2", "fi"),
    (None, "en;q=bogus", "fi"),
])
def test_language_is_the_choice_then_accept_language_then_finnish(choice, header, expected):
    assert i18n.negotiate(choice, header) == expected


def test_service_rules_are_shown_after_a_translated_prefix():
    t = i18n.translator("en")
    assert t.error("form.required") == "This is required."
    assert t.error("value is not a valid email address") == "Not valid: value is not a valid email address"


def test_every_template_compiles():
    """A template syntax error is a 500 on its page: caught here, before any browser."""
    env = web.make_environment()
    names = sorted(p.name for p in (PORTAL / "templates").glob("*.html"))
    assert "me_rectification.html" in names
    for name in names:
        env.get_template(name)
