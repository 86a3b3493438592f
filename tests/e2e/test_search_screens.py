"""The search boxes in Chromium: the top bar's box on a staff page, its grouped results and its
empty answer, and the customer list's name search, with no CSP violation; screenshots kept."""

from __future__ import annotations

from pathlib import Path

from models import db
from models.user import Role
from tests.e2e.conftest import settle
from tests.factories import make_customer, make_ticket

SHOTS = Path(__file__).parent / "screenshots"


def test_an_agent_finds_a_customer_a_ticket_and_nobody_from_the_top_bar(
    live_server, staff, staff_session, page, violations
):
    with live_server.app.app_context():
        ticket, _code = make_ticket(subject="Parcel arrived damaged")
        make_customer(name="王芳", city="杭州", member_no=str(ticket))
        make_customer(name="王芳", city="上海")
        reference = str(ticket)
        db.session.remove()
    SHOTS.mkdir(exist_ok=True)
    staff_session.sign_in(staff[Role.AGENT])
    box = page.get_by_role("searchbox", name="Search customers, tickets and coupons").first
    box.fill(reference)
    box.press("Enter")
    page.wait_for_url("**/admin/search/")
    assert page.locator("section[data-kind]").evaluate_all("els => els.map(e => e.dataset.kind)") == [
        "customer",
        "ticket",
    ]
    page.screenshot(path=str(SHOTS / "search-grouped.png"), full_page=True)
    box = page.get_by_role("searchbox", name="Search customers, tickets and coupons").first
    box.fill("王芳")
    box.press("Enter")
    page.wait_for_load_state("load")
    assert page.locator("section[data-kind=customer] [data-count]").inner_text() == "2"
    page.screenshot(path=str(SHOTS / "search-name.png"), full_page=True)
    box = page.get_by_role("searchbox", name="Search customers, tickets and coupons").first
    box.fill("Wang Fang")
    box.press("Enter")
    page.wait_for_load_state("load")
    assert page.locator("#search-empty").is_visible()
    page.screenshot(path=str(SHOTS / "search-empty.png"), full_page=True)
    page.goto("/admin/customers/")
    page.locator("#customer-search input[name=search]").fill("王")
    page.locator("#customer-search button[type=submit]").click()
    page.wait_for_load_state("load")
    assert "Names are matched exactly" in page.locator("#search-notice").inner_text()
    page.screenshot(path=str(SHOTS / "customer-search-name.png"), full_page=True)
    settle(page)
    assert violations == []
