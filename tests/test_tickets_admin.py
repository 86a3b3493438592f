"""Working tickets in the panel: the thread, moves, queues, bulk actions, masking for analysts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.events import TicketResolved, _handlers, handles
from models.tickets.ticket import Ticket, TicketMessage
from tests.conftest import csrf_token, make_staff
from tests.factories import (
    audit_events,
    failing_after_insert,
    make_customer,
    make_ticket,
    write_lock_held_elsewhere,
)

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def page_of(ticket: Ticket) -> str:
    return f"/admin/tickets/ticket/{ticket.id}"


def post_on_ticket(client, ticket: Ticket, action: str, **data):
    token = csrf_token(client.get(page_of(ticket)).text)
    return client.post(f"{page_of(ticket)}/{action}", data=data | {"csrf_token": token})


def test_agent_replies_and_the_thread_shows_it(client, auth):
    ticket, _ = make_ticket(contact_email="li@example.com")
    auth.login("agent")
    response = post_on_ticket(client, ticket, "reply", kind="outbound", body="我们已经加急处理")
    assert response.status_code == 302
    page = client.get(page_of(ticket)).text
    assert "我们已经加急处理" in page and "Where is my parcel?" in page and "li@example.com" in page
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).first_responded_at is not None


def test_opening_a_ticket_with_personal_data_is_audited_and_a_masked_view_is_not(client, auth):
    ticket, _ = make_ticket()
    agent = make_staff("agent")
    auth.login("agent")
    client.get(page_of(ticket))
    auth.logout()
    auth.login("analyst")
    client.get(page_of(ticket))
    audited = [(e.object_id, e.actor_id, e.fields) for e in audit_events("ticket.view")]
    assert audited == [(str(ticket.id), agent.id, "contact,messages,tracking_code")]


def test_a_reply_is_audited_with_its_kind_and_author(client, auth):
    ticket, _ = make_ticket()
    agent = make_staff("agent")
    auth.login("agent")
    post_on_ticket(client, ticket, "reply", kind="note", body="checked the depot")
    (message,) = db.session.scalars(sa.select(TicketMessage).where(TicketMessage.kind == "note")).all()
    assert message.author_id == agent.id
    audited = [(e.object_id, e.actor_id, e.fields, e.detail) for e in audit_events("ticket.message")]
    assert audited == [(str(ticket.id), agent.id, "body", "note")]


def test_a_failure_after_a_reply_was_written_keeps_neither_it_nor_its_audit_event(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    token = csrf_token(client.get(page_of(ticket)).text)
    # Fails as the reply goes into the thread, once the ticket and the audit event were written.
    written = "NEW.kind = 'outbound' AND EXISTS (SELECT 1 FROM audit_event WHERE action = 'ticket.message')"
    reply = {"kind": "outbound", "body": "On its way", "csrf_token": token}
    with failing_after_insert("ticket_message", written):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            client.post(f"{page_of(ticket)}/reply", data=reply)
    db.session.expire_all()
    assert [m.body for m in db.session.get(Ticket, ticket.id).messages] == ["Where is my parcel?"]
    assert db.session.get(Ticket, ticket.id).first_responded_at is None
    assert audit_events("ticket.message") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_reply_that_meets_a_busy_database_is_shown_again_unsaved(client, auth):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock")
    ticket, _ = make_ticket()
    auth.login("agent")
    token = csrf_token(client.get(page_of(ticket)).text)
    with write_lock_held_elsewhere():
        response = client.post(
            f"{page_of(ticket)}/reply", data={"kind": "note", "body": "客户要求退款", "csrf_token": token}
        )
    assert response.status_code == 503
    assert "The database was busy; your change was not saved. Please try again." in response.text
    assert "客户要求退款</textarea>" in response.text
    assert '<input checked id="kind-1" name="kind" type="radio" value="note">' in response.text
    assert db.session.scalar(sa.select(sa.func.count(TicketMessage.id))) == 1
    assert audit_events("ticket.message") == []


def test_a_failing_reaction_to_resolving_keeps_neither_the_move_nor_its_audit_event(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")

    @handles(TicketResolved)
    def refuse(uow, event) -> None:
        raise RuntimeError("the survey could not be sent")

    try:
        with pytest.raises(RuntimeError, match="the survey could not be sent"):
            post_on_ticket(client, ticket, "move", to_status="resolved")
    finally:
        _handlers[TicketResolved].remove(refuse)
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).status == "new"
    assert [e.kind for e in db.session.get(Ticket, ticket.id).events] == ["status"]
    assert audit_events("ticket.status") == []


def test_a_reply_without_csrf_token_is_refused(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    response = client.post(f"{page_of(ticket)}/reply", data={"kind": "outbound", "body": "hi"})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count(TicketMessage.id))) == 1


def test_moving_a_ticket_and_an_illegal_move(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    assert post_on_ticket(client, ticket, "move", to_status="investigating").status_code == 302
    response = post_on_ticket(client, ticket, "move", to_status="new")
    assert response.status_code == 302
    page = client.get(page_of(ticket)).text
    assert "cannot go from" in page
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).status == "investigating"


def test_editing_owner_and_priority_is_one_audit_event_naming_what_changed(client, auth):
    agent = make_staff("agent")
    ticket, _ = make_ticket()
    auth.login("manager")
    category = str(ticket.category_id)
    post_on_ticket(client, ticket, "update", owner=str(agent.id), priority="high", category=category)
    db.session.expire_all()
    edited = db.session.get(Ticket, ticket.id)
    assert (edited.owner_id, edited.priority, str(edited.category_id)) == (agent.id, "high", category)
    assert [e.kind for e in edited.events] == ["status", "owner", "priority"]
    assert [e.fields for e in audit_events("ticket.edit")] == ["owner,priority"]


def test_message_bodies_are_escaped_in_the_panel(client, auth):
    ticket, _ = make_ticket(first_message=XSS)
    auth.login("agent")
    page = client.get(page_of(ticket)).text
    assert XSS not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_analysts_see_tickets_with_personal_data_masked_and_cannot_work_them(client, auth):
    ticket, _ = make_ticket(
        contact_email="li.na@example.com", contact_name="李娜", first_message="我的电话 13912345678"
    )
    auth.login("analyst")
    page = client.get(page_of(ticket)).text
    assert "l***@example.com" in page and "李*" in page
    for secret in ("li.na@example.com", "李娜", "13912345678"):
        assert secret not in page
    assert 'id="reply-form"' not in page
    token = csrf_token(client.get("/admin/account/").text, "pw-csrf_token")
    response = client.post(
        f"{page_of(ticket)}/reply", data={"kind": "outbound", "body": "x", "csrf_token": token}
    )
    assert response.status_code == 403


def test_creating_a_ticket_for_a_known_customer_by_phone(client, auth):
    customer = make_customer(phone="13800138000")
    auth.login("agent")
    page = client.get("/admin/tickets/new/")
    data = {
        "csrf_token": csrf_token(page.text),
        "customer_lookup": "138 0013 8000",
        "subject": "电话投诉：发票",
        "channel": "phone",
        "priority": "high",
        "category": "",
        "owner": "",
        "first_message": "需要重开发票",
    }
    response = client.post("/admin/tickets/new/", data=data)
    assert response.status_code == 302, response.text
    ticket = db.session.scalar(sa.select(Ticket))
    assert ticket.customer_id == customer.id and ticket.priority == "high"
    assert response.location.endswith(page_of(ticket))
    audited = [(e.object_id, e.actor) for e in audit_events("ticket.create")]
    assert audited == [(str(ticket.id), "agent@test.example")]


def test_creating_a_ticket_for_an_unknown_contact_is_a_form_error(client, auth):
    auth.login("agent")
    page = client.get("/admin/tickets/new/")
    data = {
        "csrf_token": csrf_token(page.text),
        "customer_lookup": "nobody@example.com",
        "subject": "x",
        "channel": "phone",
        "priority": "normal",
        "category": "",
        "owner": "",
    }
    response = client.post("/admin/tickets/new/", data=data)
    assert response.status_code == 200 and "No customer has that" in response.text
    assert db.session.scalar(sa.select(sa.func.count(Ticket.id))) == 0


def test_queues_show_the_right_tickets(client, auth):
    agent = make_staff("agent")
    long_ago = utcnow() - timedelta(days=3)
    make_ticket(now=long_ago, subject="Overdue one")
    make_ticket(now=utcnow() - timedelta(hours=3), subject="Due soon one")  # 4h reply target
    make_ticket(subject="Mine one", owner_id=agent.id)
    auth.login("agent")
    lists = {
        q: client.get(f"/admin/{q}/").text
        for q in ["tickets_overdue", "tickets_due_soon", "tickets_mine", "tickets_unassigned"]
    }
    assert "Overdue one" in lists["tickets_overdue"] and "Due soon one" not in lists["tickets_overdue"]
    assert "Due soon one" in lists["tickets_due_soon"] and "Mine one" not in lists["tickets_due_soon"]
    assert "Mine one" in lists["tickets_mine"] and "Overdue one" not in lists["tickets_mine"]
    assert "Mine one" not in lists["tickets_unassigned"] and "Overdue one" in lists["tickets_unassigned"]


def test_breach_filter(client, auth):
    make_ticket(now=datetime(2020, 1, 1, tzinfo=UTC), subject="Old and late")
    make_ticket(subject="Fresh")
    auth.login("agent")
    page = client.get("/admin/tickets/").text
    filtered = client.get("/admin/tickets/?flt0_5=1").text  # filter 5: "SLA breached" is "Yes"
    assert "Old and late" in filtered and "Fresh" not in filtered
    assert "Fresh" in page


def test_bulk_assign_priority_and_close(client, auth):
    agent = make_staff("agent")
    first, _ = make_ticket()
    second, _ = make_ticket()
    auth.login("manager")
    token = csrf_token(client.get("/admin/tickets/").text)
    ids = [str(first.id), str(second.id)]
    response = client.post(
        "/admin/tickets/action/", data={"action": "assign", "rowid": ids, "csrf_token": token}
    )
    assert response.status_code == 302 and "bulk/assign" in response.location
    form_page = client.get(response.location).text
    client.post(
        "/admin/tickets/bulk/assign",
        data={"ids": ",".join(ids), "owner": str(agent.id), "csrf_token": csrf_token(form_page)},
    )
    form_page = client.get(f"/admin/tickets/bulk/priority?ids={','.join(ids)}").text
    client.post(
        "/admin/tickets/bulk/priority",
        data={"ids": ",".join(ids), "priority": "urgent", "csrf_token": csrf_token(form_page)},
    )
    client.post("/admin/tickets/action/", data={"action": "close", "rowid": ids, "csrf_token": token})
    db.session.expire_all()
    for ticket in (db.session.get(Ticket, first.id), db.session.get(Ticket, second.id)):
        assert (ticket.owner_id, ticket.priority, ticket.status) == (agent.id, "urgent", "closed")
        assert [e.kind for e in ticket.events] == ["status", "owner", "priority", "status"]


def test_closing_open_tickets_in_bulk_resolves_them_and_says_so(client, auth):
    """Closing a ticket still open resolves it: the bulk action raises TicketResolved for it."""
    customer = make_customer()
    open_one, _ = make_ticket(customer_id=customer.id)
    closed_one, _ = make_ticket()
    auth.login("manager")
    token = csrf_token(client.get("/admin/tickets/").text)
    close = {"action": "close", "csrf_token": token}
    client.post("/admin/tickets/action/", data=close | {"rowid": [closed_one.id]})
    seen = []

    @handles(TicketResolved)
    def remember(uow, event) -> None:
        seen.append((event.ticket_id, event.customer_id))

    try:
        ids = [str(open_one.id), str(closed_one.id)]
        client.post("/admin/tickets/action/", data=close | {"rowid": ids})
    finally:
        _handlers[TicketResolved].remove(remember)
    assert seen == [(open_one.id, customer.id)]
    assert "1 tickets closed, 1 already closed." in client.get("/admin/tickets/").text
    assert [e.detail for e in audit_events("ticket.status")] == ["closed (bulk)", "closed (bulk)"]


def test_deleting_a_customer_keeps_their_tickets(client, auth):
    customer = make_customer()
    ticket, _ = make_ticket(customer_id=customer.id)
    auth.login("manager")
    page = client.get("/admin/customers/")
    response = client.post(
        "/admin/customers/delete/", data={"id": customer.id, "csrf_token": csrf_token(page.text)}
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).customer_id is None
