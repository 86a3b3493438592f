"""Browser fixtures: the app served on a real port and a headless Debian Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, sync_playwright
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app
from models import db
from models.user import Role
from tests.conftest import TEST_PASSWORD, base_config, make_staff, require_service

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is blocked here; drive Debian's Chromium, offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


class QuietRequestHandler(WSGIRequestHandler):
    """Serves like werkzeug's handler but logs no request lines (errors are still logged)."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@dataclass
class LiveServer:
    """The app and the address it answers on."""

    app: Flask
    url: str


@pytest.fixture
def live_server_config() -> dict:
    """Extra configuration for the served app; a test module overrides this fixture."""
    return {}


@pytest.fixture
def live_server(database_url, tmp_path, key_material, live_server_config) -> Iterator[LiveServer]:
    """The app on 127.0.0.1 and a free port, served from a thread, on a freshly migrated database."""
    config = base_config(tmp_path, database_url, key_material) | live_server_config
    # The shared config pins SERVER_NAME=localhost, which 404s every request to 127.0.0.1:PORT.
    config.pop("SERVER_NAME", None)
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="patron-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def staff(live_server) -> dict[Role, str]:
    """An agent and an analyst account (password TEST_PASSWORD), by role → email."""
    with live_server.app.app_context():
        emails = {role: make_staff(role).email for role in (Role.AGENT, Role.ANALYST)}
        db.session.remove()
    return emails


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for this module's tests; skipped where none is installed."""
    require_service(CHROMIUM.exists(), f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh English-language browser context (own cookies) with one open page."""
    context = browser.new_context(base_url=live_server.url, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


class StaffSession:
    """Sign in and out through the real pages, as a member of staff would."""

    def __init__(self, page) -> None:
        self.page = page

    def sign_in(self, email: str, password: str = TEST_PASSWORD) -> None:
        page = self.page
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/")
        assert page.locator("#user-menu").is_visible()

    def sign_out(self) -> None:
        page = self.page
        page.locator("#user-menu").click()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")


@pytest.fixture
def staff_session(page) -> StaffSession:
    """Signs the page's browser in and out."""
    return StaffSession(page)


# What the Content-Security-Policy refused on a page's visits (tests/e2e/test_csp.py and others).
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', function (e) {
  window.patronCspViolation(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline')
    + ' on ' + location.pathname + ': ' + e.sample);
});
"""


@pytest.fixture
def violations(page: Page) -> list[str]:
    """What the browser refused on this page's visits: violation events, CSP console errors, script errors."""
    found: list[str] = []
    # A binding and an init script come from the browser's side: the page's policy does not apply.
    page.context.expose_binding("patronCspViolation", lambda _source, text: found.append(text))
    page.context.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: found.append(f"script error: {error}"))
    return found


def settle(page: Page) -> None:
    """Let late violations (from scripts that run after load) arrive before they are counted."""
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise(resolve => setTimeout(resolve, 50))")
