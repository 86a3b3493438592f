"""Two-factor sign-in in a real browser: an admin is made to enrol, then signs in with a fresh code."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import Page, expect

from models import db
from models.user import Role
from tests.conftest import TEST_PASSWORD, TWO_FACTOR_AS_DEPLOYED, make_staff
from tests.e2e.conftest import settle

pytestmark = pytest.mark.e2e


@pytest.fixture
def live_server_config() -> dict:
    """Two-factor sign-in required for admins and managers, as deployed."""
    return dict(TWO_FACTOR_AS_DEPLOYED)


@pytest.fixture
def admin(live_server) -> str:
    """An admin's email (password TEST_PASSWORD), without two-factor sign-in yet."""
    with live_server.app.app_context():
        email = make_staff(Role.ADMIN).email
        db.session.remove()
    return email


def password_step(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_an_admin_enrols_at_sign_in_and_then_signs_in_with_a_fresh_code(
    page: Page, admin: str, staff_session, tmp_path, violations
):
    password_step(page, admin)
    page.wait_for_url("**/login/enrol")
    expect(page.locator("#two-factor-qr svg")).to_be_visible()
    page.screenshot(path=str(tmp_path / "enrol.png"), full_page=True)
    secret = page.locator("#two-factor-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    totp = pyotp.TOTP(secret)

    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on and sign in").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.screenshot(path=str(tmp_path / "recovery-codes.png"), full_page=True)
    page.get_by_role("link", name="I have kept my codes; continue").click()
    page.wait_for_url("**/admin/")
    expect(page.locator("#user-menu")).to_be_visible()

    staff_session.sign_out()
    password_step(page, admin)
    page.wait_for_url("**/login/code")
    page.screenshot(path=str(tmp_path / "code.png"), full_page=True)
    # The enrolment used this time step's code: the next step's code is the fresh one.
    page.get_by_label("Code", exact=True).fill(totp.at(time.time() + totp.interval))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/admin/")
    expect(page.locator("#user-menu")).to_be_visible()
    page.goto("/admin/two_factor/")
    settle(page)
    # Every step ran under the Content-Security-Policy with nothing refused.
    assert violations == []


def test_a_replayed_code_is_refused_in_the_browser(page: Page, admin: str, live_server):
    password_step(page, admin)
    page.wait_for_url("**/login/enrol")
    totp = pyotp.TOTP(page.locator("#two-factor-secret").inner_text().replace(" ", ""))
    code = totp.now()
    page.get_by_label("Code from the app").fill(code)
    page.get_by_role("button", name="Turn on and sign in").click()
    page.get_by_role("link", name="I have kept my codes; continue").click()
    page.wait_for_url("**/admin/")
    page.context.clear_cookies()

    password_step(page, admin)
    page.wait_for_url("**/login/code")
    page.get_by_label("Code", exact=True).fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That code is not right, or it was used already. Please try the next code."
    )
    page.goto("/admin/")
    page.wait_for_url("**/login?next=**")
