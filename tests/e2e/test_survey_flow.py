"""A survey in a real browser: built and sent by a manager, answered on a customer's phone, read in admin."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from models import db
from models.user import Role
from tests.conftest import make_staff
from tests.e2e.conftest import TIMEOUT_MS
from tests.factories import make_customer

pytestmark = pytest.mark.e2e

TITLE = "After your visit to the Jing'an store"
INTRO = "Three short questions about your visit. It takes a minute."
THANK_YOU = "Thank you! A colleague will read every answer."
NPS_PROMPT = "How likely are you to recommend us to a friend?"
TEXT_PROMPT = "What should we do better?"
RATING_PROMPT = "How satisfied were you with the staff?"
TEXT_ANSWER = "The queue at the till was forty minutes and nobody explained why."
NPS_SCORE = 3  # a detractor: ≤ 6 opens a follow-up ticket
RATING_SCORE = 4  # satisfied: CSAT 100 %
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def manager(live_server) -> str:
    """A manager's email (password TEST_PASSWORD): builds surveys, invites, reads results and tickets."""
    with live_server.app.app_context():
        email = make_staff(Role.MANAGER).email
        db.session.remove()
    return email


@pytest.fixture
def open_phone_page(browser, live_server) -> Iterator[Callable[[], Page]]:
    """Opens pages in fresh English-language, phone-sized contexts: a customer's phone, no staff cookies."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", viewport=PHONE, is_mobile=True, has_touch=True
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


def add_question(page: Page, kind: str, prompt: str, order: int, required: bool = True) -> None:
    """Click "Add Questions" and fill the card it adds, finding each field by its label."""
    cards = page.locator("#questions .inline-field-list > .inline-field")
    index = cards.count()
    page.get_by_role("button", name="Add Questions").click()
    expect(cards).to_have_count(index + 1)
    card = page.locator(f"#questions-{index}")
    card.get_by_label("Order").fill(str(order))
    card.get_by_label("Type").select_option(label=kind)
    card.get_by_label(re.compile(r"^Question\b")).fill(prompt)
    card.get_by_label("Required").set_checked(required)
    # Options are asked only of choice questions.
    options = card.get_by_label("Options")
    expect(options).to_be_hidden()
    card.get_by_label("Type").select_option(label="Single choice")
    expect(options).to_be_visible()
    card.get_by_label("Type").select_option(label=kind)
    expect(options).to_be_hidden()
    expect(card.get_by_role("link", name="Remove this question")).to_be_visible()


def build_survey(page: Page) -> None:
    """Create the survey in the builder: three questions, added in one order and numbered in another."""
    page.goto("/admin/survey_builder/")
    page.get_by_role("link", name="Create").click()
    page.wait_for_url("**/admin/survey_builder/new/**")
    form = page.locator("form.admin-form")
    form.get_by_label("Title").fill(TITLE)
    form.get_by_label("Language").select_option(label="English")
    form.get_by_label("Introduction").fill(INTRO)
    form.get_by_label("Thank-you text").fill(THANK_YOU)
    add_question(page, "NPS (0–10)", NPS_PROMPT, order=1)
    add_question(page, "Free text", TEXT_PROMPT, order=3, required=False)
    add_question(page, "Rating (1–5, CSAT)", RATING_PROMPT, order=2)
    form.locator('input[type="submit"][value="Save"]').click()
    page.wait_for_url(re.compile(r"/admin/survey_builder/(\?.*)?$"))
    expect(page.locator(".alert-success")).to_contain_text(f"Created “{TITLE}”.")


def survey_row(page: Page):
    page.goto("/admin/survey_builder/")
    row = page.locator("table.model-list tbody tr").filter(has_text=TITLE)
    expect(row).to_have_count(1)
    return row


def invite_one_customer(page: Page, member_no: str) -> str:
    """From the survey list's "Invite" link, invite one customer; the link the links page shows once."""
    survey_row(page).get_by_role("link", name="Invite").click()
    page.wait_for_url(re.compile(r"/admin/survey_invite/\?survey_id=\d+$"))
    expect(page.get_by_label("Survey").locator("option:checked")).to_have_text(TITLE)
    page.get_by_label("One customer").fill(member_no)
    asked = []

    def answer(accept: bool):
        def on_dialog(dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        return on_dialog

    # Cancelling the confirmation sends nothing (the invitation list later holds one row, not two).
    page.once("dialog", answer(accept=False))
    page.get_by_role("button", name="Create invitations").click()
    expect(page.get_by_label("One customer")).to_have_value(member_no)
    assert asked == ["Create the invitations now?"]
    page.once("dialog", answer(accept=True))
    page.get_by_role("button", name="Create invitations").click()
    expect(page.get_by_role("heading", name=f"Invitation links for “{TITLE}”")).to_be_visible()
    assert asked == ["Create the invitations now?"] * 2
    rows = page.locator("#invitation-links tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td").first).to_have_text(member_no)
    link = rows.locator("code.invitation-link").inner_text().strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{32}", link), link
    expect(page.locator("#all-links")).to_have_value(f"{member_no}\t{link}\n")
    return link


def mark_links_sent(page: Page, member_no: str) -> None:
    page.get_by_role("button", name="I have sent these links").click()
    page.wait_for_url("**/admin/survey_invitations/**")
    expect(page.locator(".alert-success")).to_contain_text("marked as sent")
    expect(invitation_status(page, member_no)).to_have_text("Sent")


def invitation_status(page: Page, member_no: str):
    row = page.locator("table.model-list tbody tr").filter(has_text=member_no)
    expect(row).to_have_count(1)
    return row.locator("td.col-status")


def pick(page: Page, prompt: str, value: int) -> None:
    """Tap the numbered box of a scale question, as a person does (the radio itself is invisible)."""
    group = page.get_by_role("group", name=prompt)
    group.locator("label.point").filter(has_text=re.compile(rf"^\s*{value}\s*$")).click()


def chosen(page: Page, prompt: str):
    return page.get_by_role("group", name=prompt).locator('input[type="radio"]:checked')


def fits_the_phone(page: Page) -> None:
    """No sideways scrolling, and the send button inside the screen's width."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == PHONE["width"], widths
    button = page.get_by_role("button", name="Send my answers")
    button.scroll_into_view_if_needed()
    expect(button).to_be_in_viewport()
    box = button.bounding_box()
    assert box and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box


def answer_on_a_phone(customer: Page, link: str) -> None:
    """Open the link, send with the rating missing, see the error with the answers kept, then send it all."""
    asked_for = []
    customer.on("request", lambda request: asked_for.append(request.url))
    response = customer.goto(link)
    assert response is not None and response.status == 200
    expect(customer.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(customer.locator("html")).to_have_attribute("lang", "en")
    expect(customer.locator(".intro")).to_have_text(INTRO)
    # The builder's order numbers win over the order the questions were added in.
    expect(customer.locator("form .question legend, form .question > label")).to_have_text(
        [re.compile(re.escape(p)) for p in (NPS_PROMPT, RATING_PROMPT, TEXT_PROMPT)]
    )
    assert "/admin/static" not in customer.content()
    fits_the_phone(customer)

    pick(customer, NPS_PROMPT, NPS_SCORE)
    expect(chosen(customer, NPS_PROMPT)).to_have_value(str(NPS_SCORE))
    customer.get_by_label(TEXT_PROMPT).fill(TEXT_ANSWER)
    with customer.expect_response(lambda r: r.request.method == "POST") as sent:
        customer.get_by_role("button", name="Send my answers").click()
    assert sent.value.status == 422
    summary = customer.get_by_role("alert")
    expect(summary).to_contain_text("Please check the answers marked below.")
    expect(summary.get_by_role("listitem")).to_have_text([f"{RATING_PROMPT}: Please answer this question."])
    expect(summary).to_be_focused()
    expect(customer.locator(".question.invalid")).to_have_count(1)
    expect(customer.locator(".question.invalid")).to_contain_text(RATING_PROMPT)
    expect(chosen(customer, NPS_PROMPT)).to_have_value(str(NPS_SCORE))
    expect(customer.get_by_label(TEXT_PROMPT)).to_have_value(TEXT_ANSWER)
    fits_the_phone(customer)

    pick(customer, RATING_PROMPT, RATING_SCORE)
    expect(chosen(customer, RATING_PROMPT)).to_have_accessible_name(f"{RATING_SCORE} – Satisfied")
    customer.get_by_role("button", name="Send my answers").click()
    expect(customer.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(customer.get_by_role("status")).to_have_text(THANK_YOU)

    staff_assets = [url for url in asked_for if "/admin/" in url]
    assert not staff_assets, staff_assets

    again = customer.goto(link)
    assert again is not None and again.status == 410
    expect(customer.get_by_role("status")).to_contain_text("This survey link has been used already.")
    expect(customer.locator("form")).to_have_count(0)


def check_results(page: Page, member_no: str) -> None:
    survey_row(page).get_by_role("link", name="Results").click()
    page.wait_for_url(re.compile(r"/admin/survey_results/\d+$"))
    expect(page.get_by_role("heading", name=TITLE)).to_be_visible()
    expect(page.locator("#stat-responses")).to_have_text("1")
    expect(page.get_by_text("1 opened a follow-up ticket")).to_be_visible()
    expect(page.locator("#stat-rate")).to_have_text("100.0%")
    # One answer, a detractor: 0 % promoters − 100 % detractors.
    expect(page.locator("#stat-nps")).to_have_text("-100.0")
    expect(page.locator("#nps-shares")).to_contain_text("Detractors 100.0%")
    expect(page.locator("#stat-csat")).to_have_text("100.0%")
    text = page.locator(".survey-question").filter(has_text=TEXT_PROMPT)
    expect(text.locator(".survey-texts li")).to_have_count(1)
    expect(text.locator(".survey-texts li")).to_contain_text(TEXT_ANSWER)
    expect(text.locator(".survey-texts li")).to_contain_text(member_no)


def open_follow_up_ticket(page: Page, member_no: str) -> None:
    subject = f"Survey follow-up: {TITLE} (NPS {NPS_SCORE})"
    page.goto("/admin/tickets/")
    row = page.locator("table.model-list tbody tr").filter(has_text=subject)
    expect(row).to_have_count(1)
    expect(row.locator("td.col-priority")).to_have_text("High")
    expect(row.locator("td.col-customer")).to_contain_text(member_no)  # beside the name
    reference = row.locator("td.col-reference").inner_text().strip()
    assert re.fullmatch(r"T-\d{4}-\d{6}", reference), reference
    row.get_by_role("link", name=reference).click()
    page.wait_for_url(re.compile(r"/admin/tickets/ticket/\d+$"))
    expect(page.get_by_role("heading", name=f"{reference} · {subject}")).to_be_visible()
    # The customer by name, linked, with their member number beside it.
    expect(page.locator("#ticket-customer")).to_contain_text(member_no)
    customer_link = page.locator("#ticket-customer a")
    expect(customer_link).to_have_attribute("href", re.compile(r"/admin/customers/details/"))
    # An internal note for the team, with the customer's comment; not shown as the customer's words.
    expect(page.locator("#thread .bubble .body")).to_have_text(
        [f"Low score in survey “{TITLE}”: NPS {NPS_SCORE}.\n\n{TEXT_PROMPT}\n{TEXT_ANSWER}"]
    )
    expect(page.locator("#thread .bubble")).not_to_contain_text("From the customer")
    expect(page.locator("#ticket-survey a")).to_have_attribute(
        "href", re.compile(r"/admin/survey_results/\d+$")
    )
    expect(page.get_by_label("Priority")).to_have_value("high")


def test_a_survey_built_in_admin_is_answered_on_a_phone_and_its_results_and_follow_up_show(
    page: Page, staff_session, manager, live_server, open_phone_page, tmp_path
):
    """Does a survey built and sent in admin reach the customer, and does a detractor's answer come back?"""
    with live_server.app.app_context():
        member_no = make_customer(name="Chen Jing", email="chen.jing@example.com", language="en").member_no
        db.session.remove()
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))

    staff_session.sign_in(manager)
    build_survey(page)
    expect(survey_row(page).locator("td.col-language")).to_have_text("English")
    link = invite_one_customer(page, member_no)
    mark_links_sent(page, member_no)

    customer = open_phone_page()
    answer_on_a_phone(customer, link)
    customer.screenshot(path=str(tmp_path / "customer-used-link.png"), full_page=True)

    page.goto("/admin/survey_invitations/")
    expect(invitation_status(page, member_no)).to_have_text("Responded")
    check_results(page, member_no)
    page.screenshot(path=str(tmp_path / "survey-results.png"), full_page=True)
    open_follow_up_ticket(page, member_no)
    assert not script_errors, script_errors
