"""Canned replies: kept by managers, offered on the reply box in the customer's language first."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from models import db
from models.tickets.canned import CannedReply, fill_placeholders
from models.uow import SYSTEM, unit_of_work
from tests.factories import audit_events, make_customer, make_ticket


def model_form_token(page: str) -> str:
    """The CSRF token of Flask-Admin's model form (the top bar's search form has one of its own)."""
    found = re.search(r'<input id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found, "no model form in the page"
    return found.group(1)


def make_canned(title: str, language: str, body: str, active: bool = True) -> CannedReply:
    with unit_of_work(SYSTEM) as uow:
        reply = uow.add(CannedReply(title=title, language=language, body=body, active=active))
    return reply


def picker_options(page: str, picker_id: str = "canned-picker") -> list[tuple[str, str, str]]:
    """(group label, title, inserted text) of each choice of a picker, in order."""
    picker = re.search(rf'<select[^>]*id="{picker_id}".*?</select>', page, re.S)
    assert picker, f"no {picker_id} in the page"
    found, group = [], ""
    for tag in re.finditer(
        r'<optgroup label="([^"]*)">|<option value="\d+" data-body="([^"]*)">([^<]*)</option>',
        picker.group(0),
    ):
        if tag.group(1) is not None:
            group = html.unescape(tag.group(1))
        else:
            found.append((group, html.unescape(tag.group(3)), html.unescape(tag.group(2))))
    return found


def test_a_manager_adds_a_canned_reply_and_it_is_audited(client, auth):
    auth.login("manager")
    page = client.get("/admin/canned_replies/new/").text
    data = {
        "title": "Refund approved",
        "language": "en",
        "body": "Your refund is on its way.",
        "active": "y",
        "csrf_token": model_form_token(page),
    }
    response = client.post("/admin/canned_replies/new/", data=data)
    assert response.status_code == 302
    saved = db.session.scalars(sa.select(CannedReply)).all()
    assert [(r.title, r.language, r.body, r.active) for r in saved] == [
        ("Refund approved", "en", "Your refund is on its way.", True)
    ]
    assert [e.fields for e in audit_events("canned_reply.create")] == ["active,body,language,title"]


def test_an_agent_uses_canned_replies_but_cannot_edit_them(client, auth):
    auth.login("agent")
    assert client.get("/admin/canned_replies/").status_code == 403
    assert client.get("/admin/canned_replies/new/").status_code == 403


def test_an_analyst_cannot_open_the_canned_replies(client, auth):
    auth.login("analyst")
    assert client.get("/admin/canned_replies/").status_code == 403


def test_the_picker_offers_the_customers_language_first_and_leaves_out_inactive_replies(client, auth):
    make_canned("Thanks", "en", "Thank you!")
    make_canned("感谢", "zh_Hans_CN", "谢谢您！")
    make_canned("Old wording", "en", "Kindly revert.", active=False)
    customer = make_customer(language="en")
    ticket, _ = make_ticket(customer_id=customer.id)
    auth.login("agent")
    page = client.get(f"/admin/tickets/ticket/{ticket.id}").text
    assert picker_options(page) == [("English", "Thanks", "Thank you!"), ("简体中文", "感谢", "谢谢您！")]


def test_placeholders_are_filled_with_the_customers_name_and_the_ticket_number(client, auth):
    make_canned("Sorry", "zh_Hans_CN", "{customer_name}您好，工单{ticket_number}已处理。")
    customer = make_customer(name="王芳", language="zh_Hans_CN")
    ticket, _ = make_ticket(customer_id=customer.id)
    auth.login("agent")
    page = client.get(f"/admin/tickets/ticket/{ticket.id}").text
    assert picker_options(page) == [("简体中文", "Sorry", f"王芳您好，工单{ticket.reference}已处理。")]


def test_a_name_with_markup_stays_text_in_the_picker(client, auth):
    make_canned("Hello", "en", "Dear {customer_name},")
    customer = make_customer(name='<img src=x onerror="alert(1)">', language="en")
    ticket, _ = make_ticket(customer_id=customer.id)
    auth.login("agent")
    page = client.get(f"/admin/tickets/ticket/{ticket.id}").text
    assert 'data-body="Dear &lt;img src=x onerror=&#34;alert(1)&#34;&gt;,"' in page
    assert "<img src=x" not in page


def test_only_the_two_placeholders_are_read_nothing_else_is_interpreted():
    body = "Hi {customer_name} {customer_name.__class__} {0} {ticket_number}"
    assert fill_placeholders(body, "Li", "T-1") == "Hi Li {customer_name.__class__} {0} T-1"


def test_the_resolve_dialog_has_its_own_picker(client, auth):
    make_canned("Thanks", "en", "Thank you!")
    ticket, _ = make_ticket()
    auth.login("agent")
    page = client.get(f"/admin/tickets/ticket/{ticket.id}").text
    assert picker_options(page, "finish-canned-resolved") == [("English", "Thanks", "Thank you!")]
    assert 'data-canned-target="finish-reply-resolved"' in page


def test_the_list_filters_by_language(client, auth):
    make_canned("Thanks", "en", "Thank you!")
    make_canned("感谢", "zh_Hans_CN", "谢谢您！")
    auth.login("manager")
    page = client.get("/admin/canned_replies/?flt0_0=zh_Hans_CN").text
    assert "谢谢您！" in page and "Thank you!" not in page
