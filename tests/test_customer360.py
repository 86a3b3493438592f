"""The customer 360: its figures, its one timeline, masking by role and one audit event per view."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from insights.customer360 import customer_summary, customer_timeline
from models import db, utcnow
from models.loyalty.purchases import NewPurchase, record_purchase, refund_purchase
from models.loyalty.rewards import redeem
from models.surveys.answers import submit_response
from models.surveys.builder import Question, Survey
from models.surveys.invitations import invite_customers
from models.tickets.ticket import add_message
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.factories import audit_events, make_customer, make_reward, make_ticket

START = utcnow().replace(microsecond=0) - timedelta(days=10)


def at(hours: int):
    return START + timedelta(hours=hours)


def build_history():
    """A customer with two purchases (one refunded), a coupon, a ticket with a reply and a note, a survey."""
    customer = make_customer(name="张伟", tags="vip,wholesale")
    reward = make_reward(points_cost=100, stock=5)
    with unit_of_work(SYSTEM):
        record_purchase(
            NewPurchase(customer.id, "pos", "A-1", Decimal("880.00"), "CNY", purchased_at=at(0)), at(0)
        )
    with unit_of_work(SYSTEM):
        record_purchase(
            NewPurchase(customer.id, "pos", "A-2", Decimal("120.50"), "CNY", purchased_at=at(1)), at(1)
        )
    ticket, _code = make_ticket(now=at(2), customer_id=customer.id, first_message="Where is my parcel?")
    with unit_of_work(SYSTEM):
        ticket = db.session.merge(ticket)
        add_message(ticket, "note", "Called the courier: the parcel is in Hangzhou.", now=at(3))
    with unit_of_work(SYSTEM):
        redemption = redeem(customer.id, reward.id, at(4)).redemption
    with unit_of_work(SYSTEM):
        refund_purchase("pos", "A-2", at(5))
    with unit_of_work(SYSTEM) as uow:
        questions = [
            Question(position=1, kind="nps", prompt="Recommend us?"),
            Question(position=2, kind="rating", prompt="Happy?"),
        ]
        survey = uow.add(Survey(title="After the visit", language="en", questions=questions))
    with unit_of_work(SYSTEM):
        survey = db.session.merge(survey)
        ((invitation, _token),) = invite_customers(survey, [customer.id], now=at(6))
    with unit_of_work(SYSTEM):
        survey = db.session.merge(survey)
        nps, rating = sorted(survey.questions, key=lambda q: q.position)
        submit_response(survey, {nps.id: 9, rating.id: 4}, invitation.id, now=at(7))
    return customer, ticket, redemption, reward, survey


def rows_of(page):
    return [(row.at, row.kind, row.title, row.detail, row.number) for row in page.rows]


def test_the_timeline_lists_every_event_of_the_customer_newest_first(app):
    """Which rows, in which order, does the timeline of a customer built by factories show?"""
    customer, ticket, redemption, reward, survey = build_history()
    other = make_customer()
    make_ticket(now=at(8), customer_id=other.id)  # someone else's: not on this timeline
    page = customer_timeline(db.session, customer.id, utcnow())
    assert rows_of(page) == [
        (at(7), "answer", "After the visit", None, 9),
        (at(6), "invitation", "After the visit", "responded", None),
        (at(5), "refund", "A-2", "store", 120),
        (at(5), "points", "refund", "reverse", -120),
        (at(4), "points", f"reward {reward.id}", "redeem", -100),
        (at(4), "coupon", "Tote bag", "issued", 100),
        (at(3), "note", "Parcel late", "note", None),
        (at(2), "ticket", "Parcel late", "new", None),
        (at(2), "message", "Parcel late", "inbound", None),
        (at(1), "purchase", "A-2", "store", 120),
        (at(1), "points", "purchase", "earn", 120),
        (at(0), "purchase", "A-1", "store", 880),
        (at(0), "points", "purchase", "earn", 880),
    ]
    answer = page.rows[0]
    assert (answer.number, answer.number2, answer.target_id) == (9, 4, survey.id)
    assert page.rows[5].target_id == redemption.id and page.rows[6].target_id == ticket.id
    assert page.has_next is False


def test_the_timeline_is_paged_by_25(app):
    customer = make_customer()
    with unit_of_work(SYSTEM):
        for n in range(30):
            spec = NewPurchase(customer.id, "pos", f"P-{n:02d}", Decimal("10.00"), "CNY", purchased_at=at(n))
            record_purchase(spec, at(n))
    first = customer_timeline(db.session, customer.id, utcnow(), page=1)
    third = customer_timeline(db.session, customer.id, utcnow(), page=3)
    assert (len(first.rows), first.has_next) == (25, True)
    assert [(r.kind, r.title) for r in first.rows[:2]] == [("purchase", "P-29"), ("points", "purchase")]
    assert [(r.kind, r.title) for r in third.rows] == [("purchase", "P-04"), ("points", "purchase")] + [
        (kind, ref)
        for n in (3, 2, 1, 0)
        for kind, ref in (("purchase", f"P-{n:02d}"), ("points", "purchase"))
    ]
    assert third.has_next is False


def test_the_summary_gives_tier_balance_expiry_spend_tickets_scores_and_tags(app):
    customer, ticket, _redemption, _reward, _survey = build_history()
    summary = customer_summary(db.session, customer.id, customer.tags)
    assert (summary.tier_code, summary.balance) == ("member", 780)
    assert summary.expiring_points == 780
    assert summary.lifetime_spend == Decimal("880.00") and summary.purchases == 1
    assert summary.last_purchase_at == at(0)
    assert summary.open_ticket_count == 1 and [t.id for t in summary.open_tickets] == [ticket.id]
    assert (summary.latest_nps, summary.latest_csat, summary.latest_nps_at) == (9, 4, at(7))
    assert summary.tags == ["vip", "wholesale"]


def page_of(client, customer_id: int, page: int = 1) -> str:
    suffix = f"&page={page}" if page > 1 else ""
    response = client.get(f"/admin/customers/details/?id={customer_id}{suffix}")
    assert response.status_code == 200
    return response.text


def test_an_agent_sees_the_name_member_number_figures_and_note_excerpts(client, auth):
    customer, ticket, _redemption, _reward, _survey = build_history()
    auth.login(Role.AGENT)
    page = page_of(client, customer.id)
    heading = re.search(r'<h1[^>]*id="customer-heading">([^<]*)</h1>', page).group(1)
    assert heading == "张伟"
    assert f'id="customer-member-no">Member no. {customer.member_no}</span>' in page
    assert '<div class="value" id="summary-balance">780</div>' in page
    assert "780 expire on" in page
    assert "Called the courier: the parcel is in Hangzhou." in page
    assert '<span class="badge badge-warning">Internal note</span>' in page
    assert f'href="/admin/tickets/ticket/{ticket.id}"' in page
    assert 'id="action-new-ticket"' in page and 'id="action-redeem"' in page
    assert 'id="action-adjust"' not in page  # adjusting points is a manager's
    (event,) = audit_events("customer.view")
    assert event.fields.split(",")[-1] == "ticket_message.body"


def test_an_analyst_sees_the_masked_name_and_no_message_excerpt(client, auth):
    customer, _ticket, _redemption, _reward, _survey = build_history()
    auth.login(Role.ANALYST)
    page = page_of(client, customer.id)
    heading = re.search(r'<h1[^>]*id="customer-heading">([^<]*)</h1>', page).group(1)
    assert heading == "张*"
    assert "张伟" not in page
    assert "Where is my parcel?" not in page and "Called the courier" not in page
    assert '<span class="badge badge-warning">Internal note</span>' in page  # the row, without its text
    for action in ("new-ticket", "record-purchase", "redeem", "adjust", "invite"):
        assert f'id="action-{action}"' not in page
    assert audit_events("customer.view") == []


@pytest.mark.parametrize("pages", [[1], [1, 2], [2, 2, 1]])
def test_each_view_of_the_details_and_each_timeline_page_is_audited_once(client, auth, pages):
    customer = make_customer()
    with unit_of_work(SYSTEM):
        for n in range(14):  # 28 rows: two timeline pages
            spec = NewPurchase(customer.id, "pos", f"P-{n:02d}", Decimal("10.00"), "CNY", purchased_at=at(n))
            record_purchase(spec, at(n))
    auth.login(Role.AGENT)
    for number in pages:
        page = page_of(client, customer.id, number)
        if number == 1:
            assert f'href="/admin/customers/details/?id={customer.id}&amp;page=2"' in page
    events = audit_events("customer.view")
    assert len(events) == len(pages)
    assert {event.object_id for event in events} == {str(customer.id)}


def test_page_links_carry_the_customer_id_only(client, auth):
    customer = make_customer(name="王芳", email="wang.fang@example.com")
    with unit_of_work(SYSTEM):
        for n in range(14):
            spec = NewPurchase(customer.id, "pos", f"P-{n:02d}", Decimal("10.00"), "CNY", purchased_at=at(n))
            record_purchase(spec, at(n))
    auth.login(Role.AGENT)
    page = page_of(client, customer.id)
    hrefs = re.findall(r'href="([^"]*)"', page)
    older = [href for href in hrefs if "page=" in href]
    assert older == [f"/admin/customers/details/?id={customer.id}&amp;page=2"]
    encoded = ("王芳", "%E7%8E%8B", "wang", "example.com", "13800")
    assert [href for href in hrefs if any(part in href.lower() for part in encoded)] == []


def test_an_empty_customer_page_says_so_with_the_next_action(client, auth):
    customer = make_customer()
    auth.login(Role.AGENT)
    page = page_of(client, customer.id)
    assert "Nothing has happened with this customer yet." in page
    assert "No purchases yet." in page and "No open tickets." in page and "No survey answer yet." in page
    assert f"/admin/purchases/new/?customer_id={customer.id}" in page
    assert f"/admin/tickets/new/?customer_id={customer.id}" in page


def test_the_purchase_form_opened_from_the_customer_page_names_the_customer(client, auth):
    customer = make_customer()
    auth.login(Role.AGENT)
    page = client.get(f"/admin/purchases/new/?customer_id={customer.id}").text
    assert re.search(rf'<input[^>]*id="customer_lookup"[^>]*value="{customer.member_no}"', page)


def test_customer_timeline_query_has_no_row_for_a_stranger(app):
    assert customer_timeline(db.session, 10**6, utcnow()).rows == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(sa.text("customer"))) == 0
