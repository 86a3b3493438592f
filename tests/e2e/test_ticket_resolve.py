"""An agent takes a new ticket and resolves it with a canned reply, in a real browser, in three page loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from models import db
from models.tickets.canned import CannedReply
from models.tickets.ticket import Ticket
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.e2e.conftest import settle
from tests.factories import make_customer, make_ticket

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).parent / "screenshots"  # kept by CI as artefacts, ignored by git


@pytest.fixture
def new_ticket(live_server, staff) -> tuple[int, str]:
    """A new ticket from an English-speaking customer, and canned replies in both languages."""
    with live_server.app.app_context():
        customer = make_customer(name="Ada Lovelace", language="en")
        ticket, _code = make_ticket(customer_id=customer.id, subject="Parcel a week late")
        with unit_of_work(SYSTEM) as uow:
            uow.add(
                CannedReply(
                    title="退款已批准", language="zh_Hans_CN", body="{customer_name}您好：退款已批准。"
                )
            )
            uow.add(
                CannedReply(
                    title="Refund approved",
                    language="en",
                    body="Dear {customer_name}, your refund is on its way.",
                )
            )
        found = (ticket.id, ticket.reference)
        db.session.remove()
    return found


def ticket_state(live_server, ticket_id: int) -> tuple[str, str | None, list[tuple[str, str]]]:
    with live_server.app.app_context():
        ticket = db.session.get_one(Ticket, ticket_id)
        state = (
            ticket.status,
            str(ticket.owner) if ticket.owner else None,
            [(m.kind, m.body) for m in ticket.messages],
        )
        db.session.remove()
    return state


def test_an_agent_takes_a_new_ticket_and_resolves_it_with_a_canned_reply(
    page, live_server, staff, staff_session, violations, new_ticket
):
    ticket_id, reference = new_ticket
    staff_session.sign_in(staff[Role.AGENT])
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))

    page.goto(f"/admin/tickets/ticket/{ticket_id}")  # 1: the ticket page
    expect(page.locator("#ticket-customer")).to_contain_text("Ada Lovelace")
    page.get_by_role("button", name="Assign to me").click()  # 2: taken and acknowledged
    expect(page.locator(".alert-success")).to_contain_text("The ticket is yours now.")
    expect(page.locator("#ticket-status")).to_have_text("Acknowledged")

    page.get_by_role("link", name="Resolve…").click()
    dialog = page.get_by_role("dialog", name=f"Resolve {reference}?")
    expect(dialog).to_be_visible()
    picker = dialog.get_by_label("Canned reply")
    # The customer's language first.
    expect(picker.locator("optgroup").first).to_have_attribute("label", "English")
    picker.select_option(label="Refund approved")
    reply = dialog.get_by_label("Reply to the customer (optional)")
    expect(reply).to_have_value("Dear Ada Lovelace, your refund is on its way.")
    expect(picker).to_have_value("")  # back to its prompt, ready for another
    dialog.get_by_role("button", name="Resolve", exact=True).click()  # 3: resolved, with the reply

    page.wait_for_url(re.compile(rf"/admin/tickets/ticket/{ticket_id}$"))
    expect(page.locator("#ticket-status")).to_have_text("Resolved")
    expect(page.locator("#thread .bubble.outbound")).to_contain_text("your refund is on its way")
    settle(page)
    assert len(loads) == 3, loads
    assert ticket_state(live_server, ticket_id) == (
        "resolved",
        "Test agent",
        [("inbound", "Where is my parcel?"), ("outbound", "Dear Ada Lovelace, your refund is on its way.")],
    )
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ticket_resolved.png"), full_page=True)
    assert violations == []


def test_files_too_large_together_are_stopped_in_the_browser_with_the_reply_kept(
    page, live_server, staff, staff_session, violations, new_ticket
):
    """Two files under the per-file limit but over the request limit together: nothing is sent."""
    ticket_id, _reference = new_ticket
    staff_session.sign_in(staff[Role.AGENT])
    page.goto(f"/admin/tickets/ticket/{ticket_id}")
    limit = live_server.app.config["MAX_CONTENT_LENGTH"]
    half = b"%PDF-1.4\n" + b"0" * (limit // 2)
    page.locator("#reply-form").get_by_label("Message").fill("Both scans attached.")
    page.locator("#reply-form input[type=file]").set_input_files(
        [
            {"name": "a.pdf", "mimeType": "application/pdf", "buffer": half},
            {"name": "b.pdf", "mimeType": "application/pdf", "buffer": half},
        ]
    )
    page.locator("#reply-form").get_by_role("button", name="Add to the thread").click()
    expect(page.locator("#files-too-big")).to_have_text(
        "These files are too large together to send at once. Send them in two replies."
    )
    expect(page.locator("#reply-form").get_by_label("Message")).to_have_value("Both scans attached.")
    settle(page)
    assert ticket_state(live_server, ticket_id)[2] == [("inbound", "Where is my parcel?")]
    assert violations == []
