"""Working a ticket in few steps: subjects from messages, names in lists, assign to me, resolve and reply."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from models import db
from models.tickets.feedback import subject_from_message, submit_feedback
from models.tickets.ticket import Ticket, TicketMessage
from models.uow import Actor, unit_of_work
from tests.conftest import csrf_token, make_staff
from tests.factories import audit_events, failing_after_insert, make_customer, make_ticket

WEB_FALLBACK = "Complaint from the web form"


def action_token(html: str) -> str:
    """The CSRF token of the list's action form (the top bar's forms carry tokens of their own)."""
    found = re.search(r'<form id="action_form".*?name="csrf_token"[^>]*value="([^"]+)"', html, re.S)
    assert found, "no action form in the page"
    return found.group(1)


def page_of(ticket: Ticket) -> str:
    return f"/admin/tickets/ticket/{ticket.id}"


def reread(ticket: Ticket) -> Ticket:
    db.session.expire_all()
    return db.session.get_one(Ticket, ticket.id)


# Subjects of web tickets ---------------------------------------------------------------------


def test_a_web_ticket_is_summed_up_by_the_first_sentence_of_its_message_sealed(app):
    with unit_of_work(Actor.anonymous()):
        ticket, _code = submit_feedback("complaint", "The zip broke on day two.  I want a new coat.")
    stored = reread(ticket)
    assert (stored.subject, stored.summary) == (WEB_FALLBACK, "The zip broke on day two")
    raw = db.session.execute(sa.text("SELECT subject, summary FROM ticket WHERE id = :id"), {"id": ticket.id})
    subject, summary = raw.one()
    assert subject == WEB_FALLBACK and "zip" not in summary  # the customer's words only sealed


def test_the_summary_is_shown_to_an_agent_and_never_to_an_analyst(client, auth):
    with unit_of_work(Actor.anonymous()):
        ticket, _code = submit_feedback("complaint", "Call me on 13800138000 about the zip.")
    auth.login("agent")
    assert "Call me on 13800138000" in client.get("/admin/tickets/").text
    assert "Call me on 13800138000" in client.get(page_of(ticket)).text
    auth.logout()
    auth.login("analyst")
    for page in ("/admin/tickets/", page_of(ticket)):
        text = client.get(page).text
        assert "13800138000" not in text and "Call me" not in text, page
    assert f"{ticket.reference} · {WEB_FALLBACK}" in client.get(page_of(ticket)).text
    # Searching the list for the customer's words finds nothing: only the subject is searched.
    assert ticket.reference not in client.get("/admin/tickets/?search=13800138000").text


def test_a_long_sentence_is_cut_at_a_word_boundary_with_an_ellipsis():
    message = "The parcel arrived broken and the customer service line kept me waiting for over an hour"
    assert (
        subject_from_message(message, WEB_FALLBACK)
        == "The parcel arrived broken and the customer service line…"
    )


def test_whitespace_and_line_breaks_are_collapsed():
    assert subject_from_message("  Hello\n\n  there\tteam ", WEB_FALLBACK) == "Hello there team"


def test_chinese_ends_at_its_full_width_full_stop():
    message = "我的订单十二号就付款了。到现在还没收到"
    assert subject_from_message(message, WEB_FALLBACK) == "我的订单十二号就付款了"


def test_long_chinese_is_cut_by_characters():
    """Thirty Chinese characters fill the sixty columns a subject may take (one for the ellipsis)."""
    message = "外套偏小想退货退款吊牌还在" * 4
    assert subject_from_message(message, WEB_FALLBACK) == message[:29] + "…"


def test_an_empty_message_falls_back_to_the_kinds_label():
    assert subject_from_message(" \n\t ", WEB_FALLBACK) == WEB_FALLBACK


def test_a_decimal_point_does_not_end_the_sentence():
    assert subject_from_message("It cost 3.5 yuan more than the label! Why?", WEB_FALLBACK) == (
        "It cost 3.5 yuan more than the label!"
    )


# The customer's name in lists ----------------------------------------------------------------


def test_the_list_names_the_customer_for_an_agent(client, auth):
    customer = make_customer(name="Li Na")
    make_ticket(customer_id=customer.id)
    auth.login("agent")
    page = client.get("/admin/tickets/").text
    assert f'Li Na <small class="text-muted">{customer.member_no}</small>' in page


def test_the_list_masks_the_customers_name_for_an_analyst(client, auth):
    customer = make_customer(name="Li Na")
    make_ticket(customer_id=customer.id)
    auth.login("analyst")
    page = client.get("/admin/tickets/").text
    assert f'L*** <small class="text-muted">{customer.member_no}</small>' in page
    assert "Li Na" not in page


def test_a_web_ticket_from_nobody_known_shows_the_name_given_masked_for_an_analyst(client, auth):
    make_ticket(channel="web", contact_name="张伟")
    auth.login("analyst")
    page = client.get("/admin/tickets/").text
    assert '张* <small class="text-muted">(not a customer)</small>' in page and "张伟" not in page


@contextmanager
def counted_queries():
    """The SQL statements run in the block, as a list that fills while it runs."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def ticket_list_queries(client) -> int:
    with counted_queries() as statements:
        assert client.get("/admin/tickets/").status_code == 200
    return len([s for s in statements if "ticket" in s.lower() or "customer" in s.lower()])


def test_the_list_reads_customers_without_a_query_per_row(client, auth):
    """Does the list page run as many queries for 9 tickets as for 1? (the customer is joined)"""
    auth.login("agent")
    make_ticket(customer_id=make_customer().id)
    one = ticket_list_queries(client)
    for _ in range(8):
        make_ticket(customer_id=make_customer().id)
    assert ticket_list_queries(client) == one


# Assign to me ----------------------------------------------------------------------------------


def test_assign_to_me_takes_a_new_ticket_and_acknowledges_it(client, auth):
    ticket, _ = make_ticket()
    agent = make_staff("agent")
    auth.login("agent")
    token = csrf_token(client.get(page_of(ticket)).text)
    response = client.post(f"{page_of(ticket)}/take", data={"csrf_token": token})
    assert response.status_code == 302 and response.location.endswith(page_of(ticket))
    taken = reread(ticket)
    assert (taken.owner_id, taken.status) == (agent.id, "acknowledged")
    assert [(e.kind, e.to_value) for e in taken.events] == [
        ("status", "new"),
        ("owner", str(agent)),
        ("status", "acknowledged"),
    ]
    assert [e.detail for e in audit_events("ticket.edit")] == ["taken"]


def test_the_ticket_page_offers_assign_to_me_only_to_those_who_may_own_it(client, auth):
    ticket, _ = make_ticket()
    auth.login("analyst")
    assert 'id="take-ticket"' not in client.get(page_of(ticket)).text
    auth.logout()
    auth.login("agent")
    assert 'id="take-ticket"' in client.get(page_of(ticket)).text


def test_an_analyst_cannot_take_a_ticket(client, auth):
    ticket, _ = make_ticket()
    auth.login("analyst")
    assert client.post(f"{page_of(ticket)}/take").status_code == 403
    assert reread(ticket).owner_id is None


def test_assign_to_me_from_the_list_takes_the_open_ones(client, auth):
    agent = make_staff("agent")
    first, _ = make_ticket()
    second, _ = make_ticket()
    closed, _ = make_ticket()
    auth.login("manager")
    token = action_token(client.get("/admin/tickets/").text)
    client.post("/admin/tickets/action/", data={"action": "close", "rowid": [closed.id], "csrf_token": token})
    auth.logout()
    auth.login("agent")
    token = action_token(client.get("/admin/tickets/").text)
    ids = [str(first.id), str(second.id), str(closed.id)]
    client.post("/admin/tickets/action/", data={"action": "take", "rowid": ids, "csrf_token": token})
    assert "2 tickets assigned to you, 1 skipped (not open)." in client.get("/admin/tickets/").text
    owners = {t.id: (t.owner_id, t.status) for t in map(reread, (first, second, closed))}
    assert owners == {
        first.id: (agent.id, "acknowledged"),
        second.id: (agent.id, "acknowledged"),
        closed.id: (None, "closed"),
    }


# Resolve or close with a reply, in one step --------------------------------------------------


def finish(client, ticket: Ticket, to_status: str, reply: str):
    token = csrf_token(client.get(f"{page_of(ticket)}/finish?to={to_status}").text)
    data = {"to_status": to_status, "reply": reply, "csrf_token": token}
    return client.post(f"{page_of(ticket)}/finish", data=data)


def test_resolve_with_a_reply_adds_the_reply_and_resolves_at_once(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    response = finish(client, ticket, "resolved", "Refunded today.")
    assert response.status_code == 302 and response.location.endswith(page_of(ticket))
    done = reread(ticket)
    assert done.status == "resolved"
    assert [(m.kind, m.body) for m in done.messages] == [
        ("inbound", "Where is my parcel?"),
        ("outbound", "Refunded today."),
    ]
    assert done.first_responded_at == done.resolved_at


def test_close_without_a_reply_only_closes(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    finish(client, ticket, "closed", "   ")
    done = reread(ticket)
    assert (done.status, len(done.messages)) == ("closed", 1)


def test_a_move_that_is_not_allowed_adds_no_reply_and_keeps_what_was_typed(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    finish(client, ticket, "closed", "")
    response = finish(client, ticket, "resolved", "Too late for this")
    assert response.status_code == 400
    assert "Too late for this</textarea>" in response.text
    assert "A ticket cannot go from “Closed” to “Resolved”." in response.text
    assert [m.kind for m in reread(ticket).messages] == ["inbound"]


def test_only_resolve_and_close_can_be_asked_for_here(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    assert finish(client, ticket, "investigating", "hi").status_code == 400
    assert reread(ticket).status == "new"


def test_a_failure_after_the_reply_was_written_leaves_neither_the_reply_nor_the_move(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    token = csrf_token(client.get(f"{page_of(ticket)}/finish").text)
    # Fails as the status change is audited, once the reply and its audit event were written.
    written = "NEW.action = 'ticket.status' AND EXISTS (SELECT 1 FROM ticket_message WHERE kind = 'outbound')"
    data = {"to_status": "resolved", "reply": "All sorted.", "csrf_token": token}
    with failing_after_insert("audit_event", written):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            client.post(f"{page_of(ticket)}/finish", data=data)
    kept = reread(ticket)
    assert (kept.status, kept.resolved_at, kept.first_responded_at) == ("new", None, None)
    assert db.session.scalars(sa.select(TicketMessage.kind)).all() == ["inbound"]
    assert audit_events("ticket.message") == []


def test_the_confirmation_page_works_without_script(client, auth):
    """The "Resolve…" link leads to a page with the same form (the dialog is only a shortcut)."""
    ticket, _ = make_ticket()
    auth.login("agent")
    page = client.get(page_of(ticket)).text
    link = re.search(r'href="([^"]+)"[^>]*data-toggle="modal" data-target="#finish-resolved"', page)
    assert link and link.group(1) == f"{page_of(ticket)}/finish?to=resolved"
    confirm = client.get(link.group(1).replace("&amp;", "&")).text
    assert "Resolve T-" in confirm and 'name="reply"' in confirm and 'value="resolved"' in confirm


def test_a_new_ticket_goes_to_resolved_in_three_page_loads(client, auth):
    """Open the ticket (1), assign to me, which acknowledges it (2), resolve with a reply (3)."""
    ticket, _ = make_ticket()
    auth.login("agent")
    loads = 0

    def load(path: str) -> str:
        nonlocal loads
        loads += 1
        return client.get(path).text

    page = load(page_of(ticket))
    response = client.post(f"{page_of(ticket)}/take", data={"csrf_token": csrf_token(page)})
    page = load(response.location)
    data = {"to_status": "resolved", "reply": "Sorted, sorry!", "csrf_token": csrf_token(page)}
    response = client.post(f"{page_of(ticket)}/finish", data=data)
    page = load(response.location)
    done = reread(ticket)
    assert (loads, done.status, [m.kind for m in done.messages]) == (3, "resolved", ["inbound", "outbound"])
    assert [e.to_value for e in done.events if e.kind == "status"] == ["new", "acknowledged", "resolved"]


def test_the_new_ticket_form_from_a_customers_page_holds_their_member_number(client, auth):
    """The 360's "New ticket" link (?customer_id=N) opens the form with that customer filled in."""
    customer = make_customer(name="Li Na")
    make_customer(name="Someone else")
    auth.login("agent")
    page = client.get(f"/admin/tickets/new/?customer_id={customer.id}").text
    field = re.search(r'<input[^>]*id="customer_lookup"[^>]*>', page)
    assert field is not None and f'value="{customer.member_no}"' in field.group(0)
    # Without it the field is empty, and an unknown id fills in nothing.
    for url in ("/admin/tickets/new/", "/admin/tickets/new/?customer_id=999999"):
        field = re.search(r'<input[^>]*id="customer_lookup"[^>]*>', client.get(url).text)
        assert field is not None
        assert 'value=""' in field.group(0) or "value=" not in field.group(0)


def test_a_ticket_list_showing_names_is_audited_for_those_customers_only_when_unmasked(client, auth):
    shown = make_customer(name="王芳")
    ticket, _code = make_ticket(customer_id=shown.id)
    auth.login("agent")
    assert "王芳" in client.get("/admin/tickets/").text
    (event,) = audit_events("customer.list")
    assert (event.fields, event.detail) == ("name", f"ids={shown.id}")
    auth.logout()
    auth.login("analyst")
    assert "王芳" not in client.get("/admin/tickets/").text
    assert len(audit_events("customer.list")) == 1  # masked names are no disclosure
