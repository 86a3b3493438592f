"""A complaint in a real browser: filed on the public form, answered in admin, followed by tracking code."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from models import db
from models.user import Role
from tests.e2e.conftest import TIMEOUT_MS
from tests.factories import make_ticket

pytestmark = pytest.mark.e2e

COMPLAINT = "My parcel arrived crushed and the shop will not answer my calls."
CUSTOMER_EMAIL = "li.na@example.com"
REPLY = "We are sorry. A courier will collect the parcel tomorrow and we will refund you."
NOTE = "Courier depot Pudong again; third crushed parcel this week, escalate to logistics."
XSS = '<img src=x onerror="window.__xss=1"> <script>window.__xss=1</script> crushed parcel'


@pytest.fixture
def open_customer_page(browser, live_server) -> Iterator[Callable[[], Page]]:
    """Opens pages in fresh English-language contexts: a customer's own browser, no staff cookies."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(base_url=live_server.url, locale="en-US")
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


def file_complaint(page: Page, message: str, email: str) -> tuple[str, str]:
    """Send a complaint through /feedback; the reference and tracking code the thank-you page shows."""
    page.goto("/feedback")
    page.get_by_label("A complaint").check()
    page.get_by_label("Your message").fill(message)
    page.get_by_label("Email (optional)").fill(email)
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/feedback/sent")
    code = page.locator("#tracking-code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", code), code
    reference = re.search(r"Your reference is (T-\d{4}-\d{6})\.", page.locator("main").inner_text())
    assert reference, page.locator("main").inner_text()
    return reference.group(1), code


def open_ticket_from_list(page: Page, reference: str) -> None:
    """Find the ticket in the admin list and follow its reference to the ticket page."""
    page.goto("/admin/tickets/")
    row = page.locator("table.model-list tbody tr").filter(has_text=reference)
    expect(row).to_have_count(1)
    row.get_by_role("link", name=reference).click()
    page.wait_for_url(re.compile(r"/admin/tickets/ticket/\d+$"))
    # Web tickets take their subject from the message's first sentence.
    expect(page.get_by_role("heading", name=re.compile(rf"^{reference} · "))).to_be_visible()


def add_to_thread(page: Page, send_as: str, body: str) -> None:
    form = page.locator("#reply-form")
    form.get_by_label(send_as).check()
    form.locator('textarea[name="body"]').fill(body)
    form.get_by_role("button", name="Add to the thread").click()
    expect(page.locator(".alert-success")).to_contain_text("Added to the thread.")


def thread_bodies(page: Page, kind: str):
    return page.locator(f'#thread .bubble[data-kind="{kind}"] .body')


def xss_ran(page: Page) -> bool:
    return page.evaluate("typeof window.__xss !== 'undefined'")


def test_customer_reads_the_reply_and_status_but_not_the_internal_note(
    page: Page, staff_session, staff, open_customer_page, tmp_path
):
    """Does a complaint reach the agent, and does the customer then see the reply but not the note?"""
    reference, code = file_complaint(open_customer_page(), COMPLAINT, CUSTOMER_EMAIL)

    staff_session.sign_in(staff[Role.AGENT])
    open_ticket_from_list(page, reference)
    expect(thread_bodies(page, "inbound")).to_have_text([COMPLAINT])
    expect(page.locator('[data-contact="email"]')).to_have_text(CUSTOMER_EMAIL)
    add_to_thread(page, "Reply to the customer", REPLY)
    add_to_thread(page, "Internal note", NOTE)
    page.locator('button[data-move="investigating"]').click()
    expect(page.locator(".alert-success")).to_contain_text("Status changed to Investigating.")
    expect(page.locator("#ticket-status")).to_have_text("Investigating")
    expect(thread_bodies(page, "outbound")).to_have_text([REPLY])
    expect(thread_bodies(page, "note")).to_have_text([NOTE])
    page.screenshot(path=str(tmp_path / "agent-ticket-after-reply.png"), full_page=True)

    customer = open_customer_page()
    customer.goto(f"/track/{code}")
    expect(customer.locator("h1")).to_contain_text(reference)
    expect(customer.locator("#ticket-status")).to_have_text("Investigating")
    expect(customer.locator(".msg.inbound .body")).to_have_text([COMPLAINT])
    expect(customer.locator(".msg.outbound .body")).to_have_text([REPLY])
    expect(customer.locator(".msg")).to_have_count(2)
    assert NOTE not in customer.content()
    customer.screenshot(path=str(tmp_path / "customer-tracking-page.png"), full_page=True)


def test_markup_in_a_complaint_shows_as_text_and_never_runs(
    page: Page, staff_session, staff, open_customer_page
):
    """Does HTML and script in a complaint show as literal text to the agent and the customer, and not run?"""
    reference, code = file_complaint(open_customer_page(), XSS, CUSTOMER_EMAIL)

    staff_session.sign_in(staff[Role.AGENT])
    open_ticket_from_list(page, reference)
    expect(thread_bodies(page, "inbound")).to_have_text([XSS])
    expect(page.locator("#thread img, #thread .body script")).to_have_count(0)
    assert not xss_ran(page)
    # Quoted back to the customer, the payload must stay inert on the public page too.
    add_to_thread(page, "Reply to the customer", f"You wrote: {XSS}")
    assert not xss_ran(page)

    customer = open_customer_page()
    customer.goto(f"/track/{code}")
    expect(customer.locator(".msg.inbound .body")).to_have_text([XSS])
    expect(customer.locator(".msg.outbound .body")).to_have_text([f"You wrote: {XSS}"])
    expect(customer.locator(".msg img, .msg script")).to_have_count(0)
    assert not xss_ran(customer)


@pytest.mark.parametrize("mangle", ["one_character_off", "too_short"])
def test_a_wrong_tracking_code_gives_404(live_server, open_customer_page, mangle):
    """Does a tracking code that matches no ticket get the 404 page, with nothing of the ticket on it?"""
    with live_server.app.app_context():
        ticket, code = make_ticket(channel="web", first_message=COMPLAINT)
        reference = ticket.reference
        db.session.remove()
    last = "0" if code[-1] != "0" else "1"
    wrong = {"one_character_off": code[:-1] + last, "too_short": code[:11]}[mangle]

    customer = open_customer_page()
    response = customer.goto(f"/track/{wrong}")
    assert response is not None and response.status == 404
    reason = {"one_character_off": "No message has this tracking code", "too_short": "A tracking code has 16"}
    expect(customer.locator("p.error")).to_contain_text(reason[mangle])
    expect(customer.get_by_label("Tracking code")).to_have_value(wrong)
    text = customer.locator("body").inner_text()
    assert reference not in text and COMPLAINT not in text

    assert customer.goto(f"/track/{code}").status == 200
