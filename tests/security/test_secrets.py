"""Finding 4 (issue 16): outside `rekisteri up` a service refuses to start with the public
development token secret or any secret under 32 bytes, naming the variable; `rekisteri token`
mints with the development secret only with `--dev`."""
from __future__ import annotations

import secrets

import pytest

from services.contacts.settings import ContactsSettings
from shared.settings import DEV_TOKEN_SECRET, InsecureConfiguration, PlatformSettings

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("secret", [DEV_TOKEN_SECRET, "CHANGE-ME", "x" * 31])
async def test_a_served_service_refuses_a_public_or_short_secret(secret):
    from services.contacts.app import build_app

    app = build_app(ContactsSettings(rekisteri_token_secret=secret, database_url=UNREACHABLE))
    with pytest.raises(InsecureConfiguration, match="REKISTERI_TOKEN_SECRET"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - never reached


@pytest.mark.parametrize("secret", [DEV_TOKEN_SECRET, "x" * 31])
async def test_the_portal_refuses_a_public_or_short_secret(secret):
    """Issue 19: the portal mints the services' tokens, so it refuses them too (it did not check)."""
    from services.portal.app import build_app
    from services.portal.settings import PortalSettings

    app = build_app(PortalSettings(rekisteri_token_secret=secret, database_url=UNREACHABLE))
    with pytest.raises(InsecureConfiguration, match="REKISTERI_TOKEN_SECRET"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - never reached


def test_a_long_random_secret_or_the_embedded_stack_is_accepted():
    PlatformSettings(rekisteri_token_secret=secrets.token_urlsafe(32)).check_secrets()
    PlatformSettings(rekisteri_dev_stack=True).check_secrets()


def test_rekisteri_up_marks_its_services_as_the_development_stack(tmp_path, monkeypatch):
    from shared.ops.launcher import Stack

    monkeypatch.setenv("REKISTERI_DATA_DIR", str(tmp_path))
    assert Stack().env["REKISTERI_DEV_STACK"] == "true"


def test_the_token_command_needs_dev_for_the_development_secret(monkeypatch, capsys):
    from shared.ops.cli import main

    monkeypatch.delenv("REKISTERI_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("REKISTERI_DEV_STACK", raising=False)
    assert main(["token", "--role", "register_owner", "--user", "ops"]) == 2
    assert "--dev" in capsys.readouterr().err
    assert main(["token", "--role", "register_owner", "--user", "ops", "--dev"]) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT
