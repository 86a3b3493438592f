"""Does axe-core find no serious or critical accessibility violation on the main staff and public pages?

axe-core comes from the npm registry (`make assets` installs it in node_modules/). It is given to
each page as an init script (Page.addScriptToEvaluateOnNewDocument): the page's own
Content-Security-Policy does not apply to it, whereas `page.add_script_tag(content=...)` inserts an
inline <script> without our nonce, which the policy refuses ("axe is not defined").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import url_for
from playwright.sync_api import Page

from models import db
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.conftest import make_staff
from tests.factories import make_customer, make_ticket

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# WCAG 2.0/2.1 A and AA rules, and axe's best practices (landmarks, one h1, skip link).
RUN_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}
}


@pytest.fixture
def axe_page(page: Page) -> Page:
    """The test's page with axe-core loaded into every document it opens."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make assets` (axe-core from the npm registry)")
    page.add_init_script(script=AXE.read_text(encoding="utf-8"))
    return page


def violations_on(page: Page, label: str) -> list[dict]:
    """axe-core's violations on the page as it stands, each with the page's label."""
    result = page.evaluate("options => axe.run(document, options)", RUN_OPTIONS)
    return [
        {"page": label, "rule": v["id"], "impact": v["impact"], "targets": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
    ]


def check_pages(page: Page, pages: list[tuple[str, str]]) -> list[dict]:
    """Open each page and collect its violations."""
    found: list[dict] = []
    for label, url in pages:
        response = page.goto(url)
        assert response is not None and response.status < 500, f"{label}: {url} answered {response}"
        found += violations_on(page, label)
    return found


def report(found: list[dict]) -> str:
    """One line per violation: impact, rule, page, targets."""
    return "\n".join(f"{v['impact']:9} {v['rule']:28} {v['page']:18} {v['targets'][:3]}" for v in found)


def blocking(found: list[dict]) -> list[dict]:
    return [v for v in found if v["impact"] in BLOCKING]


def seed(app) -> dict:
    """A customer with a ticket and a purchase, a survey with an invitation, as the system."""
    from decimal import Decimal

    from models.loyalty.purchases import NewPurchase, record_purchase
    from models.surveys.builder import Question, Survey
    from models.surveys.invitations import invite_customers

    with app.app_context():
        customer = make_customer()
        ticket, code = make_ticket(customer_id=customer.id)
        with unit_of_work(SYSTEM):
            record_purchase(NewPurchase(customer.id, "pos", "AXE-1", Decimal("120.00"), "CNY"))
        with unit_of_work(SYSTEM) as uow:
            question = Question(position=1, kind="nps", prompt="Would you recommend us?")
            survey = uow.add(Survey(title="After the visit", language="en", questions=[question]))
        with unit_of_work(SYSTEM):
            ((_invitation, token),) = invite_customers(survey, [customer.id])
        admin = make_staff(Role.ADMIN)
        ids = {
            "customer": customer.id,
            "ticket": ticket.id,
            "survey": survey.id,
            "token": token,
            "code": code,
            "admin": admin.email,
        }
        db.session.remove()
    return ids


def staff_pages(app, ids: dict) -> list[tuple[str, str]]:
    """The main staff pages, by label."""
    with app.test_request_context():
        return [
            ("home", url_for("admin.index")),
            ("customer list", url_for("customers.index_view")),
            ("customer details", url_for("customers.details_view", id=ids["customer"])),
            ("ticket list", url_for("tickets.index_view")),
            ("ticket page", url_for("tickets.ticket_page", ticket_id=ids["ticket"])),
            ("purchases", url_for("purchases.index_view")),
            ("ledger", url_for("ledger.index_view")),
            ("rewards", url_for("rewards.index_view")),
            ("survey list", url_for("survey_builder.index_view")),
            ("survey results", url_for("survey_results.results", survey_id=ids["survey"])),
            ("invite", url_for("survey_invite.index")),
            ("staff list", url_for("staff.index_view")),
            ("audit log", url_for("audit.index_view")),
            ("account", url_for("account.index")),
            ("two-factor", url_for("two_factor.index")),
        ]


def test_staff_pages_have_no_serious_accessibility_violation(live_server, axe_page, staff_session):
    """Does axe-core find nothing serious or critical on the main staff pages, for an admin?"""
    ids = seed(live_server.app)
    staff_session.sign_in(ids["admin"])
    found = check_pages(axe_page, staff_pages(live_server.app, ids))
    print(f"\naxe-core on the staff pages: {len(blocking(found))} serious or critical, {len(found)} in all")
    print(report(found))
    assert blocking(found) == [], report(blocking(found))


def test_public_pages_have_no_serious_accessibility_violation(live_server, axe_page):
    """Does axe-core find nothing serious or critical on the public pages (thank-you and error too)?"""
    ids = seed(live_server.app)
    found = check_pages(
        axe_page,
        [
            ("feedback", "/feedback"),
            ("tracking look-up", "/track"),
            ("survey", f"/s/{ids['token']}"),
        ],
    )
    axe_page.locator("input[type=radio]").first.check()
    axe_page.locator("form button[type=submit], form input[type=submit]").last.click()
    axe_page.wait_for_load_state()
    # The survey is in the customer's language (Chinese): "感谢" is "thank".
    assert re.search(r"Thank you|感谢", axe_page.content()), "the survey did not reach its thank-you page"
    found += violations_on(axe_page, "thank-you")
    found += check_pages(axe_page, [("error", "/no-such-page")])
    print(f"\naxe-core on the public pages: {len(blocking(found))} serious or critical, {len(found)} in all")
    print(report(found))
    assert blocking(found) == [], report(blocking(found))


def test_axe_is_refused_as_an_inline_script_by_our_policy(live_server, page):
    """Would `add_script_tag(content=...)` work under our CSP? (No: why the init script is used.)"""
    page.goto("/feedback")
    try:
        page.add_script_tag(content="window.injected = true;")
    except Exception:  # Playwright raises when the browser refuses the tag
        pass
    assert page.evaluate("window.injected === true") is False
