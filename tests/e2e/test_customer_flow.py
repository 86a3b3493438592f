"""A customer's personal data in a real browser: entered by an agent, masked for an analyst,
who cannot look the customer up by contact details."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from models import db
from models.customer import Customer
from models.user import Role
from tests.factories import make_customer

pytestmark = pytest.mark.e2e

NAME = "Zhang Wei"
EMAIL = "zhang.wei@example.com"
PHONE = "138 1234 5678"
PHONE_STORED = "+8613812345678"
MASKED = {"name": "Z***", "email": "z***@example.com", "phone": "****5678"}


def customer_count(live_server) -> int:
    """How many customers the database holds, read outside any browser request."""
    with live_server.app.app_context():
        count = db.session.scalar(sa.select(sa.func.count(Customer.id)))
        db.session.remove()
    return count


def open_new_customer_form(page: Page) -> None:
    page.goto("/admin/customers/new/")
    expect(page.locator("form.admin-form")).to_be_visible()


def fill_customer_form(page: Page, name: str, email: str, phone: str) -> None:
    form = page.locator("form.admin-form")
    form.locator("#name").fill(name)
    form.locator("#email").fill(email)
    form.locator("#phone").fill(phone)
    form.locator('input[type="submit"][value="Save"]').click()


def search_customers(page: Page, term: str):
    """Type a term into the customer list's search box; the rows of the result.

    The term is posted; the result's address carries only a sealed search id (`q`).
    """
    page.goto("/admin/customers/")
    box = page.locator('form[role="search"] input[name="search"]')
    box.fill(term)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/admin/customers/\?.*q="))
    assert term not in page.url
    return page.locator("table.model-list tbody tr")


def test_agent_sees_pii_and_analyst_sees_it_masked(page: Page, staff_session, live_server, staff, tmp_path):
    """Does a customer entered by an agent show in clear to the agent and masked to an analyst?"""
    with live_server.app.app_context():
        make_customer(email="someone.else@example.com", phone="+86 139 0000 1111", name="Li Na")
        db.session.remove()

    staff_session.sign_in(staff[Role.AGENT])
    open_new_customer_form(page)
    fill_customer_form(page, NAME, EMAIL, PHONE)
    expect(page.locator(".alert-success")).to_contain_text("Created “")
    assert customer_count(live_server) == 2

    rows = search_customers(page, EMAIL)
    expect(rows).to_have_count(1)
    expect(rows.locator("td.col-name")).to_have_text(NAME)
    expect(rows.locator("td.col-email")).to_have_text(EMAIL)
    expect(rows.locator("td.col-phone")).to_have_text(PHONE_STORED)
    staff_session.sign_out()
    expect(page.locator(".alert-info")).to_contain_text("You are signed out.")

    staff_session.sign_in(staff[Role.ANALYST])
    search_customers(page, EMAIL)
    expect(page.locator("#search-notice")).to_contain_text("nothing was looked up")
    expect(page.locator("table.model-list tbody tr td.col-name")).to_have_count(0)
    with live_server.app.app_context():
        member_no = db.session.scalar(sa.select(Customer.member_no).order_by(Customer.id.desc()).limit(1))
        db.session.remove()
    rows = search_customers(page, member_no)
    expect(rows).to_have_count(1)
    expect(rows.locator("td.col-name")).to_have_text(MASKED["name"])
    expect(rows.locator("td.col-email")).to_have_text(MASKED["email"])
    expect(rows.locator("td.col-phone")).to_have_text(MASKED["phone"])
    listing = page.locator("table.model-list").inner_text()
    for clear in (NAME, EMAIL, PHONE_STORED, "13812345678"):
        assert clear not in listing
    # Kept with the test's tmp files: a picture of what the analyst saw, for when this breaks.
    page.screenshot(path=str(tmp_path / "analyst-masked-list.png"), full_page=True)


def test_malformed_email_is_refused_with_a_form_error(page: Page, staff_session, live_server, staff):
    """Does the customer form refuse a malformed email, say why, and save nothing?"""
    staff_session.sign_in(staff[Role.AGENT])
    open_new_customer_form(page)
    fill_customer_form(page, NAME, "zhang.wei@@example", PHONE)

    expect(page).to_have_url(re.compile(r"/admin/customers/new/"))
    email_group = page.locator("form.admin-form .form-group").filter(has=page.locator("#email"))
    expect(email_group).to_contain_text("Not a valid email address")
    expect(page.locator("form.admin-form #email")).to_have_value("zhang.wei@@example")
    assert customer_count(live_server) == 0
