"""The Content-Security-Policy in a real Chromium: staff and public pages work with every inline
script refused, and the browser reports no violation (no script, handler or javascript: URL blocked)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from models import db
from models.customer import Customer
from models.surveys.answers import submit_response
from models.surveys.builder import Question, Survey
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.conftest import make_staff
from tests.e2e.conftest import settle
from tests.factories import make_customer, make_ticket

pytestmark = pytest.mark.e2e


@pytest.fixture
def survey_id(live_server) -> int:
    """An English survey with an anonymous link (/p/visit), a rating and a choice question, one answer."""
    with live_server.app.app_context():
        survey = Survey(title="Your visit", language="en", public_link=True, public_slug="visit")
        survey.questions = [
            Question(position=1, kind="rating", prompt="How satisfied were you?", required=True),
            Question(
                position=2, kind="single", prompt="Which store?", required=False, options="Jing'an\nXuhui"
            ),
        ]
        with unit_of_work(SYSTEM) as uow:
            uow.add(survey)
        rating, store = survey.questions
        with unit_of_work(SYSTEM):
            submit_response(survey, {rating.id: "4", store.id: "Xuhui"})
        survey_id = survey.id
        db.session.remove()
    return survey_id


def test_public_pages_run_under_the_policy(page: Page, live_server, survey_id, violations):
    """Feedback, tracking and a survey (with its error summary focused) without a blocked script."""
    page.goto("/feedback")
    page.get_by_label("Your message").fill("The parcel arrived broken.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/feedback/sent")
    code = page.locator("#tracking-code").inner_text().strip()
    settle(page)

    page.goto("/track")
    page.get_by_label("Tracking code").fill(code)
    page.get_by_label("Tracking code").press("Enter")
    page.wait_for_url(re.compile(r"/track/"))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    settle(page)

    page.goto("/p/visit")
    page.get_by_role("button", name="Send my answers").click()
    summary = page.locator("#error-summary")
    expect(summary).to_contain_text("Please check the answers marked below.")
    expect(summary).to_be_focused()  # autofocus, no script
    settle(page)
    page.get_by_role("group", name=re.compile("How satisfied")).locator("label.point").nth(4).click()
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    settle(page)
    assert violations == [], "\n".join(violations)


def customers_left(live_server) -> int:
    with live_server.app.app_context():
        count = db.session.scalar(sa.select(sa.func.count(Customer.id)))
        db.session.remove()
    return count


class Dialogs:
    """Answers every confirm() of a page (OK or Cancel, as set), noting each question."""

    def __init__(self, page: Page) -> None:
        self.accept = True
        self.asked: list[str] = []
        page.on("dialog", self._answer)

    def _answer(self, dialog) -> None:
        self.asked.append(dialog.message)
        if self.accept:
            dialog.accept()
        else:
            dialog.dismiss()


@pytest.fixture
def admin(live_server) -> str:
    """An admin's email; two-factor sign-in is not what this test is about."""
    live_server.app.config["TWO_FACTOR_REQUIRED_ROLES"] = []
    with live_server.app.app_context():
        email = make_staff(Role.ADMIN).email
        for n in range(3):
            make_customer(name=f"CSP Customer {n}", email=f"csp{n}@example.com")
        make_ticket()
        db.session.remove()
    return email


def delete_with_the_row_button(page: Page, live_server, dialogs: Dialogs) -> None:
    """The list's delete button asks first: "Cancel" keeps the row, "OK" deletes it."""
    page.goto("/admin/customers/")
    rows = page.locator("table.model-list tbody tr")
    expect(rows).to_have_count(3)
    dialogs.accept = False
    rows.first.locator('button[title="Delete Record"]').click()
    expect(rows).to_have_count(3)
    assert customers_left(live_server) == 3
    dialogs.accept = True
    rows.first.locator('button[title="Delete Record"]').click()
    expect(page.locator(".alert-success")).to_contain_text("Deleted “")
    assert customers_left(live_server) == 2
    assert dialogs.asked == ["Are you sure you want to delete this record?"] * 2
    settle(page)


def delete_with_the_bulk_action(page: Page, live_server, dialogs: Dialogs) -> None:
    """ "With selected" → Delete asks, then deletes the ticked rows."""
    dialogs.asked.clear()
    page.locator("table.model-list tbody tr input.action-checkbox").first.check()
    page.get_by_role("button", name="With selected").click()
    page.locator("[data-patron-action='delete']").click()
    expect(page.locator(".alert-success")).to_be_visible()
    assert customers_left(live_server) == 1
    assert dialogs.asked == ["Are you sure you want to delete selected records?"]
    # The active "List" tab is a javascript: link; clicking it neither navigates nor is refused
    # (once the page's scripts have run: a click before that is refused, harmlessly).
    settle(page)
    page.locator(".nav-tabs a.nav-link.active").click()
    settle(page)


def filter_tickets(page: Page) -> None:
    page.goto("/admin/tickets/")
    page.get_by_role("link", name="Add Filter").click()
    page.locator(".field-filters a.filter").first.click()
    expect(page.locator("table.filters tr")).to_have_count(1)
    settle(page)


def add_a_question(page: Page) -> None:
    page.goto("/admin/survey_builder/new/")
    cards = page.locator("#questions .inline-field-list > .inline-field")
    expect(cards).to_have_count(0)
    page.get_by_role("button", name="Add Questions").click()
    expect(cards).to_have_count(1)
    # The builder's own script (inline, with the nonce) labelled the new card's remove link.
    expect(cards.first.get_by_role("link", name="Remove this question")).to_be_visible()
    settle(page)


def test_staff_pages_run_under_the_policy(
    page: Page, live_server, staff_session, admin, survey_id, violations
):
    """Dashboard, lists (delete confirm, bulk action, filters), details, edit, the survey builder and
    results charts, the invite page: all work, and the browser refuses nothing."""
    staff_session.sign_in(admin)
    expect(page.locator("#stat-customers")).to_have_text("3")
    settle(page)
    dialogs = Dialogs(page)
    delete_with_the_row_button(page, live_server, dialogs)
    delete_with_the_bulk_action(page, live_server, dialogs)

    page.locator("table.model-list tbody tr a[title='View Record']").first.click()
    page.wait_for_url(re.compile(r"/admin/customers/details/"))
    settle(page)
    page.goto(page.url.replace("/details/", "/edit/"))
    expect(page.locator("form.admin-form")).to_be_visible()
    settle(page)

    filter_tickets(page)
    add_a_question(page)
    page.goto(f"/admin/survey_results/{survey_id}")
    expect(page.locator("svg[role='img']").first).to_be_visible()
    settle(page)
    page.goto(f"/admin/survey_invite/?survey_id={survey_id}")
    expect(page.get_by_role("button", name="Create invitations")).to_be_visible()
    settle(page)
    assert violations == [], "\n".join(violations)
