"""Fixtures of the portal tests: the four services started in-process (tests/conftest.py)
and served on real loopback ports with uvicorn, the portal in front of them on its own
port, staff accounts, and a real headless Chromium driven by Selenium (installed with apt
when missing and we are root; otherwise the browser tests are skipped, saying why)."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import uvicorn

from services.portal import accounts
from services.portal.app import build_app
from services.portal.settings import PortalSettings
from tests.conftest import service_test_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_CACHE = Path(os.environ.get("REKISTERI_AXE_CACHE", Path.home() / ".cache" / "rekisteri-axe"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(app: Any, port: int, *, lifespan: str = "off") -> uvicorn.Server:
    """An ASGI app on a real loopback port, in this event loop (the services' runtimes live here)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # pytest keeps its own
    server.task = asyncio.create_task(server.serve())  # type: ignore[attr-defined]
    while not server.started:
        if server.task.done():  # type: ignore[attr-defined]
            server.task.result()  # type: ignore[attr-defined]
        await asyncio.sleep(0.02)
    return server


async def shutdown(server: uvicorn.Server) -> None:
    server.should_exit = True
    await server.task  # type: ignore[attr-defined]


@dataclass
class Stack:
    """The four services (in-process, each also on a loopback port) and the portal."""

    services: dict[str, Any]
    urls: dict[str, str]
    portal_url: str
    portal_app: Any

    @property
    def portal(self) -> Any:
        return self.portal_app.state.portal


@pytest.fixture(scope="session")
async def stack(infra, database_url, start_service) -> AsyncIterator[Stack]:
    services, servers, urls = {}, [], {}
    for name in ("contacts", "consent", "retention", "billing"):
        svc = await start_service(name)
        port = free_port()
        servers.append(await serve(svc.app, port))
        services[name], urls[name] = svc, f"http://127.0.0.1:{port}"
    settings = PortalSettings(**service_test_settings(infra, database_url, rekisteri_dev_stack=True), **{
        f"portal_{name}_url": url for name, url in urls.items()},
        portal_port=free_port(), argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
    app = build_app(settings)
    servers.append(await serve(app, settings.portal_port, lifespan="on"))
    yield Stack(services, urls, f"http://127.0.0.1:{settings.portal_port}", app)
    for server in reversed(servers):
        await shutdown(server)


async def add_staff(stack: Stack, role: str, username: str | None = None, *, totp: bool = False
                    ) -> tuple[str, str | None]:
    username = username or f"{role}-{uuid.uuid4().hex[:8]}"
    async with stack.portal.pool.acquire() as conn:
        secret = await accounts.add_staff(conn, stack.portal.passwords, username, role, PASSWORD, with_totp=totp)
    return username, secret


# ---- the browser ---------------------------------------------------------------------------

def _chromium_available() -> str | None:
    """None when Chromium and its driver are there (installed now if root); else why not."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Chromium is not installed (apt-get install chromium chromium-driver needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
            return f"installing Chromium failed ({' '.join(cmd)})"
    return None if CHROMIUM.exists() and CHROMEDRIVER.exists() else "Chromium did not install"


def _axe_source() -> str | None:
    path = AXE_CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists() and shutil.which("npm"):
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(AXE_CACHE),
                        "axe-core@4"], capture_output=True, timeout=600)
    return path.read_text() if path.exists() else None


class Browser:
    """A Selenium-driven Chromium. Its calls block, so tests run them in a thread
    (`await browser.run(fn)`) while the services and the portal serve in the event loop."""

    def __init__(self, driver: Any, base_url: str, axe: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.axe = axe

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # sync helpers, used inside `run`
    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def by_css(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all_css(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def follow(self, css: str) -> None:
        """Click what navigates (a link, a submit button) and wait for the next page."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.by_css("html")
        self.by_css(css).click()
        WebDriverWait(self.driver, 30).until(expected_conditions.staleness_of(old))

    def fill(self, css: str, value: str) -> None:
        element = self.by_css(css)
        element.clear()
        element.send_keys(value)

    def text(self) -> str:
        return self.by_css("main").text

    def sign_out(self) -> None:
        if self.all_css("form[action='/logout'] button"):
            self.follow("form[action='/logout'] button")
        self.driver.delete_all_cookies()

    def staff_sign_in(self, username: str, password: str = PASSWORD) -> None:
        self.open("/login")
        self.fill("#f-username", username)
        self.fill("#f-password", password)
        self.follow("form.card button[type=submit]")

    def accessibility_violations(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations of WCAG 2.1 A/AA on the current page."""
        self.driver.execute_script(self.axe)
        violations = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
            ".then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));")
        return [{"id": v["id"], "impact": v["impact"], "help": v.get("help"),
                 "nodes": [n.get("target") for n in v.get("nodes", [])][:3]}
                for v in violations if v.get("impact") in ("serious", "critical")]

    def check_page(self, screenshot: str | None = None) -> None:
        """No serious/critical axe violation; optionally save a screenshot for docs/screenshots."""
        bad = self.accessibility_violations()
        assert not bad, f"{self.driver.current_url}: accessibility violations {bad}"
        if screenshot:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            height = self.driver.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
            self.driver.set_window_size(1280, min(max(int(height) + 160, 700), 2600))  # + the window frame
            self.driver.save_screenshot(str(SCREENSHOTS / f"{screenshot}.png"))
            self.driver.set_window_size(1280, 1000)


@pytest.fixture(scope="session")
async def browser(stack: Stack) -> AsyncIterator[Browser]:
    why_not = await asyncio.to_thread(_chromium_available)
    if why_not:
        pytest.skip(f"browser tests skipped: {why_not}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser tests skipped: the selenium package is not installed (pip install -e '.[dev]')")
    axe = await asyncio.to_thread(_axe_source)
    if axe is None:
        pytest.skip("browser tests skipped: axe-core could not be installed with npm")
    profile = tempfile.mkdtemp(prefix="rekisteri-chromium-")

    def start() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"intl.accept_languages": "fi,en"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        return driver

    driver = await asyncio.to_thread(start)
    try:
        yield Browser(driver, stack.portal_url, axe)
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)
