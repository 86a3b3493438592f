"""The public complaint form and tracking page: abuse-proof, linked to known customers, private."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from models import db
from models.tickets.ticket import Ticket, add_message, move_ticket
from models.uow import SYSTEM, unit_of_work
from tests.conftest import csrf_token
from tests.factories import audit_events, failing_after_insert, make_customer, write_lock_held_elsewhere


def send_feedback(client, **fields):
    page = client.get("/feedback")
    data = {"kind": "complaint", "message": "The parcel arrived broken.", "csrf_token": csrf_token(page.text)}
    return client.post("/feedback", data=data | fields)


def tickets() -> list[Ticket]:
    return list(db.session.scalars(sa.select(Ticket).order_by(Ticket.id)))


def code_from(client, response) -> str:
    page = client.get(response.location).text
    return page.split('data-code="')[1].split('"')[0]


def test_feedback_opens_a_web_ticket_and_shows_a_tracking_code(client):
    response = send_feedback(client, name="王芳", email="Wang.Fang@Example.com")
    assert response.status_code == 302
    code = code_from(client, response)
    (ticket,) = tickets()
    assert ticket.channel == "web" and ticket.category.code == "complaint" and ticket.status == "new"
    assert ticket.messages[0].kind == "inbound" and ticket.messages[0].body == "The parcel arrived broken."
    assert ticket.contact_name == "王芳" and ticket.contact_email == "Wang.Fang@example.com"
    assert client.get(f"/track/{code}").status_code == 200
    # The code is shown once: reloading the thank-you page does not show it again.
    assert code not in client.get("/feedback/sent").text


def test_feedback_is_audited_as_an_anonymous_visitor_naming_no_values(client):
    send_feedback(client, name="王芳", email="wang@example.com")
    (ticket,) = tickets()
    (event,) = audit_events("ticket.create")
    assert (event.object_id, event.actor, event.actor_id, event.ip) == (
        str(ticket.id),
        "anonymous",
        None,
        "127.0.0.1",
    )
    assert event.fields == "channel,priority,subject" and "王芳" not in event.detail


def test_a_failure_after_the_ticket_was_written_keeps_neither_it_nor_its_audit_event(client):
    # The ticket is written first (its audit event names its id): the failure comes after it.
    written = "NEW.action = 'ticket.create' AND EXISTS (SELECT 1 FROM ticket)"
    with failing_after_insert("audit_event", written):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            send_feedback(client, message="Lost on the way")
    assert tickets() == []
    assert audit_events("ticket.create") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_shows_the_form_again_with_everything_typed(client):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock; PostgreSQL does not lock a new ticket's insert")
    typed = {"kind": "suggestion", "message": "请延长营业时间", "name": "王芳", "email": "wang@example.com"}
    with write_lock_held_elsewhere():
        response = send_feedback(client, phone="13912345678", **typed)
    assert response.status_code == 503
    assert "The database was busy; your message was not saved yet. Please send it again." in response.text
    for value in ("请延长营业时间", "王芳", "wang@example.com", "13912345678"):
        assert value in response.text
    assert '<input checked id="kind-1" name="kind" required type="radio" value="suggestion">' in response.text
    assert "Nothing was lost" not in response.text
    assert tickets() == []
    assert send_feedback(client, **typed).status_code == 302  # sent again once the database is free
    assert [t.messages[0].body for t in tickets()] == ["请延长营业时间"]


def test_feedback_is_linked_to_a_known_customer_by_email_or_phone(client):
    by_email = make_customer(email="li.na@example.com", phone="13900139000")
    by_phone = make_customer(email="other@example.com", phone="13700137000")
    send_feedback(client, email="LI.NA@example.com")
    send_feedback(client, phone="+86 137-0013-7000")
    send_feedback(client, email="stranger@example.com")
    assert [t.customer_id for t in tickets()] == [by_email.id, by_phone.id, None]


def test_a_post_without_csrf_token_is_400_and_opens_nothing(client):
    response = client.post("/feedback", data={"kind": "complaint", "message": "hello"})
    assert response.status_code == 400
    assert tickets() == []


def test_a_filled_honeypot_is_dropped_without_a_ticket(client):
    response = send_feedback(client, website="http://spam.example")
    assert response.status_code == 302
    assert tickets() == []
    assert "tracking-code" not in client.get(response.location).text


def test_too_many_submissions_are_refused_with_429(client, app):
    statuses = [send_feedback(client).status_code for _ in range(6)]
    assert statuses == [302] * 5 + [429]
    assert len(tickets()) == 5


def test_a_malformed_email_is_a_form_error_that_keeps_the_message(client):
    response = send_feedback(client, email="not-an-email", message="我的快递丢了")
    assert response.status_code == 200
    assert "Not a valid email address" in response.text
    assert "我的快递丢了" in response.text
    assert tickets() == []


def test_an_empty_message_is_refused(client):
    response = send_feedback(client, message="   ")
    assert response.status_code == 200 and "Please write your message." in response.text
    assert tickets() == []


def test_tracking_shows_status_and_replies_but_never_internal_notes(client):
    code = code_from(client, send_feedback(client, email="wang@example.com", name="王芳"))
    (ticket,) = tickets()
    with unit_of_work(SYSTEM):
        add_message(ticket, "note", "VIP? check history")
        add_message(ticket, "outbound", "我们已为您补发。")
        move_ticket(ticket, "investigating")
    page = client.get(f"/track/{code}").text
    assert "我们已为您补发。" in page and "The parcel arrived broken." in page
    assert "Investigating" in page and ticket.reference in page
    assert "VIP? check history" not in page
    assert "wang@example.com" not in page and "王芳" not in page


def test_a_wrong_tracking_code_is_a_404_showing_the_lookup_form_with_the_code(client):
    code = code_from(client, send_feedback(client))
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    response = client.get(f"/track/{wrong}")
    assert response.status_code == 404
    assert "parcel" not in response.text
    assert f'value="{wrong}"' in response.text and "No message has this tracking code" in response.text


def test_message_is_escaped_on_the_tracking_page(client):
    payload = '<script>alert("x")</script>'
    code = code_from(client, send_feedback(client, message=payload))
    page = client.get(f"/track/{code}").text
    assert payload not in page and "&lt;script&gt;" in page


def test_public_pages_follow_the_browsers_language(client):
    page = client.get("/feedback", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert "联系我们" in page


def test_the_tracking_lookup_form_leads_to_the_ticket(client):
    code = code_from(client, send_feedback(client))
    response = client.get("/track", query_string={"code": f"  {code}  "})
    assert response.status_code == 302 and response.location.endswith(f"/track/{code}")


def test_a_mistyped_code_in_the_lookup_form_says_so_and_keeps_it(client):
    send_feedback(client)
    response = client.get("/track", query_string={"code": "NOT-A-REAL-CODE"})
    assert response.status_code == 404
    assert "A tracking code has 16 letters and digits" in response.text
    assert 'value="NOT-A-REAL-CODE"' in response.text


# Malformed requests: a 4xx or the form again, never a server error, never a ticket.


def test_a_message_sent_as_a_file_part_is_a_missing_message_and_keeps_the_rest(client):
    """Is a text field sent as a file (multipart) read as missing, with what was typed kept?"""
    response = send_feedback(
        client, message=(io.BytesIO(b"The parcel arrived broken."), "note.txt"), name="王芳"
    )
    assert response.status_code == 200
    assert "Please write your message." in response.text and 'value="王芳"' in response.text
    assert tickets() == []


def test_a_file_part_in_place_of_every_field_is_a_400(client):
    """Is a form whose CSRF token comes as a file refused like a form without one?"""
    page = client.get("/feedback")
    data = {"csrf_token": (io.BytesIO(csrf_token(page.text).encode()), "token.txt"), "message": "hello"}
    assert client.post("/feedback", data=data).status_code == 400
    assert tickets() == []


@pytest.mark.parametrize("body", ['{"kind": "complaint", "message": 5}', "[1, 2]", "false", "{" * 5000])
def test_a_json_body_is_no_form_and_a_400(client, body):
    """Is a JSON body (numbers, lists, deep nesting) refused with 400 instead of reaching the fields?"""
    response = client.post("/feedback", data=body, content_type="application/json")
    assert response.status_code == 400
    assert tickets() == []


@pytest.mark.parametrize("field", ["message", "name", "email", "kind"])
def test_a_nul_character_in_any_field_is_a_400(client, field):
    """Is text holding NUL (which PostgreSQL cannot store) refused with 400, opening nothing?"""
    assert send_feedback(client, **{field: "a\x00b"}).status_code == 400
    assert tickets() == []


@pytest.mark.parametrize(
    ("url", "status", "form"),
    [("/track?code=A%00B", 400, False), ("/track/A%00B", 404, False), ("/track?code=%ED%A0%80", 404, True)],
)
def test_odd_tracking_codes_are_a_4xx_or_the_lookup_again(client, url, status, form):
    """Do NUL and invalid UTF-8 in a tracking code answer 400, or 404 with the lookup form, never 500?"""
    response = client.get(url)
    assert response.status_code == status
    assert ("A tracking code has 16 letters and digits" in response.text) == form
