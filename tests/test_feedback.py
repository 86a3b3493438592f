"""The public complaint form and tracking page: abuse-proof, linked to known customers, private."""

from __future__ import annotations

import sqlalchemy as sa

from models import db
from models.ticket import Ticket, add_message, transition
from tests.conftest import csrf_token
from tests.factories import make_customer


def send_feedback(client, **fields):
    page = client.get("/feedback")
    data = {"kind": "complaint", "message": "The parcel arrived broken.", "csrf_token": csrf_token(page.text)}
    return client.post("/feedback", data=data | fields)


def tickets() -> list[Ticket]:
    return list(db.session.scalars(sa.select(Ticket).order_by(Ticket.id)))


def code_from(client, response) -> str:
    page = client.get(response.location).text
    return page.split('id="tracking-code">')[1].split("<")[0]


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
    add_message(ticket, "note", "VIP? check history", None)
    add_message(ticket, "outbound", "我们已为您补发。", None)
    transition(ticket, "investigating")
    db.session.commit()
    page = client.get(f"/track/{code}").text
    assert "我们已为您补发。" in page and "The parcel arrived broken." in page
    assert "Investigating" in page and ticket.reference in page
    assert "VIP? check history" not in page
    assert "wang@example.com" not in page and "王芳" not in page


def test_a_wrong_tracking_code_is_a_plain_404(client):
    code = code_from(client, send_feedback(client))
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    response = client.get(f"/track/{wrong}")
    assert response.status_code == 404
    assert "parcel" not in response.text


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
    assert response.status_code == 200
    assert "No message has this tracking code" in response.text and 'value="NOT-A-REAL-CODE"' in response.text
