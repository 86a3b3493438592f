"""Survey screens: the builder, invitations with their links, results, export, and ticket CSAT."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.audit import AuditEvent
from models.loyalty.ledger import LoyaltyAccount
from models.loyalty.programme import BASE_TIER, Tier
from models.loyalty.purchases import NewPurchase, record_purchase
from models.surveys.answers import SurveyResponse, submit_response
from models.surveys.builder import Question, Survey
from models.surveys.invitations import Invitation, create_invitation
from models.tickets.ticket import Ticket
from models.uow import SYSTEM, Actor, unit_of_work
from models.user import Role
from tests.conftest import csrf_token, make_staff
from tests.factories import audit_events, failing_after_insert, make_customer, make_ticket


def build_form(client, url="/admin/survey_builder/new/", **fields) -> dict:
    data = {
        "csrf_token": csrf_token(client.get(url).text),
        "title": "Visit survey",
        "language": "en",
        "intro": "",
        "thank_you": "",
        "detractor_nps": "6",
    }
    return data | fields


def question_fields(*questions) -> dict:
    data = {}
    for i, (kind, prompt, options, position) in enumerate(questions):
        data |= {
            f"questions-{i}-kind": kind,
            f"questions-{i}-prompt": prompt,
            f"questions-{i}-options": options,
            f"questions-{i}-position": position,
            f"questions-{i}-required": "y",
        }
    return data


def surveys() -> list[Survey]:
    return list(db.session.scalars(sa.select(Survey).order_by(Survey.id)))


def make_survey(**fields) -> Survey:
    survey = Survey(title=fields.pop("title", "After your visit"), language="en", public_link=True, **fields)
    survey.questions = [
        Question(position=1, kind="nps", prompt="Recommend us?"),
        Question(position=2, kind="rating", prompt="Satisfied?"),
        Question(position=3, kind="text", prompt="Anything else?", required=False),
    ]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def invite(survey: Survey, customer_id: int | None = None, **kwargs) -> Invitation:
    with unit_of_work(SYSTEM):
        invitation, _token = create_invitation(survey, customer_id, **kwargs)
    return invitation


def post_invite(client, survey: Survey, **fields):
    """Send the invitation form; a segment's count is confirmed as shown (the second step)."""
    page = client.get("/admin/survey_invite/")
    data = {"csrf_token": csrf_token(page.text), "survey": str(survey.id), "days_valid": "7"}
    response = client.post("/admin/survey_invite/", data=data | fields)
    if 'name="confirm_token"' not in response.text:
        return response
    confirm = {"confirm_token": csrf_token(response.text, "confirm_token")}
    return client.post("/admin/survey_invite/", data=data | fields | confirm)


def answer(survey: Survey, nps: int, rating: int, text: str = "", invitation=None):
    by_kind = {q.kind: q.id for q in survey.questions}
    raw = {by_kind["nps"]: str(nps), by_kind["rating"]: str(rating), by_kind["text"]: text}
    with unit_of_work(Actor.anonymous("203.0.113.7")):
        return submit_response(survey, raw, invitation)


def test_a_manager_builds_a_survey_with_ordered_questions(client, auth):
    auth.login(Role.MANAGER)
    data = build_form(client, public_link="y") | question_fields(
        ("text", "Anything else?", "", "3"),
        ("nps", "How likely are you to recommend us?", "", "1"),
        ("single", "Which shop?", "Nanjing Rd\nXujiahui", ""),
    )
    response = client.post("/admin/survey_builder/new/", data=data)
    assert response.status_code == 302
    (survey,) = surveys()
    assert [(q.position, q.kind) for q in survey.questions] == [(1, "nps"), (2, "text"), (3, "single")]
    assert survey.public_slug and len(survey.public_slug) >= 12
    assert client.get(f"/p/{survey.public_slug}").status_code == 200


def test_a_broken_survey_is_refused_with_a_message_and_nothing_saved(client, auth):
    auth.login(Role.ADMIN)
    data = build_form(client) | question_fields(("single", "Which shop?", "Only one", "1"))
    page = client.post("/admin/survey_builder/new/", data=data, follow_redirects=True)
    assert "needs at least two different options" in page.text
    assert surveys() == []
    empty = client.post("/admin/survey_builder/new/", data=build_form(client), follow_redirects=True)
    assert "Add at least one question" in empty.text and surveys() == []


def test_an_answered_question_keeps_its_type_and_the_survey_its_history(client, auth):
    survey = make_survey()
    answer(survey, 9, 5)
    nps_question = survey.questions[0]
    auth.login(Role.ADMIN)
    url = f"/admin/survey_builder/edit/?id={survey.id}"
    data = build_form(client, url, title=survey.title, public_link="y")
    for i, q in enumerate(survey.questions):
        data |= {
            f"questions-{i}-id": str(q.id),
            f"questions-{i}-kind": "rating" if q.id == nps_question.id else q.kind,
            f"questions-{i}-prompt": q.prompt,
            f"questions-{i}-position": str(q.position),
            f"questions-{i}-options": "",
        }
    page = client.post(url, data=data, follow_redirects=True)
    assert "its type cannot change" in page.text
    db.session.expire_all()
    assert db.session.get(Question, nps_question.id).kind == "nps"
    token = csrf_token(client.get("/admin/survey_builder/").text)
    client.post("/admin/survey_builder/delete/", data={"id": survey.id, "csrf_token": token})
    assert len(surveys()) == 1


def test_invitations_for_one_customer_a_selection_and_a_segment(client, auth):
    survey = make_survey()
    one = make_customer(language="en")
    vip = [make_customer(tags="vip"), make_customer(tags="vip, wholesale")]
    make_customer(tags="wholesale")
    auth.login(Role.AGENT)

    def invite(**fields):
        return post_invite(client, survey, **fields)

    links = re.findall(r"http://localhost/s/[\w-]+", invite(customer=one.member_no).text)
    assert len(set(links)) == 1
    assert client.get(links[0].removeprefix("http://localhost")).status_code == 200
    segment = invite(tag="vip").text
    assert len(set(re.findall(r"/s/[\w-]+", segment))) == 2
    picked = invite(ids=f"{vip[0].id},{one.id}").text
    assert len(set(re.findall(r"/s/[\w-]+", picked))) == 2
    invitations = list(db.session.scalars(sa.select(Invitation)))
    assert len(invitations) == 5 and all(len(i.token_hash) == 64 for i in invitations)
    assert not any(link.rsplit("/", 1)[1] in str(i.token_hash) for i in invitations for link in links)
    # The list's bulk action leads to the same page with the selection.
    action_page = client.get("/admin/customers/")
    response = client.post(
        "/admin/customers/action/",
        data={"action": "invite", "rowid": [str(vip[1].id)], "csrf_token": csrf_token(action_page.text)},
    )
    assert response.status_code == 302 and f"ids={vip[1].id}" in response.location
    # Marked as sent from the links page.
    ids = ",".join(str(i.id) for i in invitations)
    client.post(
        "/admin/survey_invite/sent",
        data={"ids": ids, "csrf_token": csrf_token(client.get("/admin/survey_invite/").text)},
    )
    db.session.expire_all()
    assert {i.status for i in db.session.scalars(sa.select(Invitation))} == {"sent", "opened"}


def test_a_closed_survey_or_no_match_invites_nobody(client, auth):
    survey = make_survey()
    auth.login(Role.MANAGER)
    response = post_invite(client, survey, tag="nobody")
    assert "No customers to invite" in response.text
    assert db.session.scalar(sa.select(sa.func.count(Invitation.id))) == 0


def invited_answer(survey: Survey):
    """A customer invited, answering 10 and 5 with a comment; returns the customer."""
    customer = make_customer()
    answer(survey, 10, 5, "Lovely staff", invite(survey, customer.id))
    return customer


def test_results_show_scores_shares_and_text_without_identity_for_analysts(client, auth):
    survey = make_survey()
    customer = invited_answer(survey)
    answer(survey, 8, 4)
    answer(survey, 3, 2, '=HYPERLINK("http://evil.example")')
    auth.login(Role.ANALYST)
    page = client.get(f"/admin/survey_results/{survey.id}").text
    assert 'id="stat-responses">3<' in page
    assert "+0.0" in page  # 1 promoter, 1 passive, 1 detractor
    assert "33.3%" in page and "66.7%" in page  # shares; CSAT 2 of 3
    assert "Lovely staff" in page and customer.member_no not in page
    assert 'id="stat-rate">100.0%' in page
    export = client.get(f"/admin/survey_results/{survey.id}/export")
    rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert rows[0][:2] == ["Response", "Submitted"] and "Member no." not in rows[0]
    assert len(rows) == 4 and rows[3][4].startswith("'=")
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "survey.export")) is not None


def test_agents_see_who_wrote_and_date_filters_narrow_the_results(client, auth):
    survey = make_survey()
    customer = invited_answer(survey)
    auth.login(Role.AGENT)
    assert customer.member_no in client.get(f"/admin/survey_results/{survey.id}").text
    assert client.get(f"/admin/survey_results/{survey.id}/export").status_code == 403
    later = client.get(f"/admin/survey_results/{survey.id}?start=2099-01-01").text
    assert 'id="stat-responses">0<' in later and "No responses in this period" in later


@pytest.mark.parametrize("score", [2, 5])
def test_resolving_a_ticket_sends_a_csat_survey_scored_on_the_ticket(client, auth, score):
    survey = make_survey(title="Support satisfaction", send_on_resolution=True)
    customer = make_customer()
    agent = make_staff(Role.AGENT)
    ticket, _code = make_ticket(customer_id=customer.id, owner_id=agent.id)
    auth.login(Role.AGENT)
    page = client.get(f"/admin/tickets/ticket/{ticket.id}")
    moved = client.post(
        f"/admin/tickets/ticket/{ticket.id}/move",
        data={"to_status": "resolved", "csrf_token": csrf_token(page.text)},
        follow_redirects=True,
    )
    link = re.search(r"http://localhost(/s/[\w-]+)", moved.text).group(1)
    invitation = db.session.scalar(sa.select(Invitation))
    assert invitation.ticket_id == ticket.id and invitation.customer_id == customer.id
    form_page = client.get(link)
    by_kind = {q.kind: f"q{q.id}" for q in survey.questions}
    client.post(
        link,
        data={
            "csrf_token": csrf_token(form_page.text),
            by_kind["nps"]: "9",
            by_kind["rating"]: str(score),
        },
    )
    db.session.expire_all()
    rated = db.session.get(Ticket, ticket.id)
    assert rated.csat_score == score
    results = client.get(f"/admin/survey_results/{survey.id}").text
    assert 'id="agent-scores"' in results and "Test agent" in results
    assert f"{score} / 5" in client.get(f"/admin/tickets/ticket/{ticket.id}").text
    response = db.session.scalar(sa.select(SurveyResponse))
    assert (response.follow_up_ticket_id is not None) == (score <= 2)


def test_an_invitation_can_be_about_one_of_the_customers_purchases(client, auth):
    survey = make_survey()
    customer = make_customer()
    with unit_of_work(SYSTEM):
        record_purchase(NewPurchase(customer.id, "pos", "ORDER-77", Decimal("120"), "CNY"))
    auth.login(Role.AGENT)
    unknown = post_invite(client, survey, customer=customer.member_no, order_ref="NOPE")
    assert "no purchase with that order reference" in unknown.text
    assert "Give the customer too" in post_invite(client, survey, order_ref="ORDER-77", tag="vip").text
    assert db.session.scalar(sa.select(sa.func.count(Invitation.id))) == 0
    post_invite(client, survey, customer=customer.member_no, order_ref="ORDER-77")
    invitation = db.session.scalar(sa.select(Invitation))
    assert invitation.purchase_id is not None and invitation.customer_id == customer.id
    assert "Purchase #" in client.get("/admin/survey_invitations/").text


def test_invitations_past_their_expiry_are_shown_expired_and_stored_so_by_the_job(client, auth, runner):
    survey = make_survey()
    old = invite(survey, days_valid=1, now=utcnow() - timedelta(days=3))
    fresh = invite(survey, days_valid=5)
    auth.login(Role.ANALYST)
    listed = client.get("/admin/survey_invitations/").text
    cells = re.findall(r'<td class="col-status">\s*(\w+)\s*</td>', listed)
    assert sorted(cells) == ["Created", "Expired"]
    arg = re.search(r'"Status": \[\{"arg": "(\d+)", "index": \d+, "operation": "equals"', listed).group(1)
    filtered = client.get(f"/admin/survey_invitations/?flt0_{arg}=expired").text
    assert re.findall(r'<td class="col-status">\s*(\w+)\s*</td>', filtered) == ["Expired"]
    results = client.get(f"/admin/survey_results/{survey.id}").text
    assert "of 2 invitations" in results and "Created 1, Expired 1" in results
    db.session.expire_all()
    assert db.session.get(Invitation, old.id).status == "created"  # reading the pages wrote nothing
    result = runner.invoke(args=["expire-invitations"])
    assert "1 invitations expired" in result.output
    db.session.expire_all()
    assert (db.session.get(Invitation, old.id).status, db.session.get(Invitation, fresh.id).status) == (
        "expired",
        "created",
    )
    (event,) = audit_events("survey_invitation.expire")
    assert (event.actor, event.detail) == ("cli", "n=1")


def test_the_home_page_shows_satisfaction_of_the_last_30_days(client, auth):
    survey = make_survey()
    answer(survey, 10, 5)
    answer(survey, 2, 3)
    auth.login(Role.ANALYST)
    page = client.get("/admin/").text
    assert 'id="stat-nps">+0.0<' in page and 'id="stat-csat">50.0%<' in page


def test_open_and_close_times_are_typed_in_local_time_and_stored_in_utc(client, auth):
    auth.login(Role.MANAGER)  # the panel's default zone: Asia/Shanghai, UTC+8
    data = build_form(client, opens_at="2026-12-01 09:00:00", closes_at="2026-12-31 18:00:00")
    data |= question_fields(("nps", "Recommend us?", "", "1"))
    assert client.post("/admin/survey_builder/new/", data=data).status_code == 302
    (survey,) = surveys()
    assert survey.opens_at == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert survey.closes_at == datetime(2026, 12, 31, 10, 0, tzinfo=UTC)
    assert 'value="2026-12-01 09:00:00"' in client.get(f"/admin/survey_builder/edit/?id={survey.id}").text
    backwards = build_form(client, opens_at="2026-12-31 09:00:00", closes_at="2026-12-01 09:00:00")
    page = client.post(
        "/admin/survey_builder/new/", data=backwards | question_fields(("nps", "Again?", "", "1"))
    )
    assert "must close after it opens" in page.text and len(surveys()) == 1


# The customers of each tier below: members include the customers without a loyalty account.
TIER_MEMBERS = {"member": 3, "silver": 1, "gold": 2, "platinum": 1}


@pytest.mark.parametrize("tier", list(TIER_MEMBERS))
def test_a_segment_by_tier_invites_exactly_its_members(client, auth, tier):
    """Every tier, the base tier included (customers without an account belong to it)."""
    assert sorted(db.session.scalars(sa.select(Tier.code))) == sorted(TIER_MEMBERS) and BASE_TIER == "member"
    survey = make_survey()
    make_customer()
    make_customer()  # neither has a loyalty account: both are in the base tier
    accounts = ["member", "silver", "gold", "gold", "platinum"]
    customers = [make_customer() for _ in accounts]
    with unit_of_work(SYSTEM) as uow:
        for customer, code in zip(customers, accounts, strict=True):
            uow.add(LoyaltyAccount(customer_id=customer.id, balance=0, tier_code=code))
    auth.login(Role.AGENT)
    page = post_invite(client, survey, tier=tier)
    assert page.status_code == 200
    assert len(set(re.findall(r"/s/[\w-]+", page.text))) == TIER_MEMBERS[tier]
    assert db.session.scalar(sa.select(sa.func.count(Invitation.id))) == TIER_MEMBERS[tier]
    (event,) = audit_events("survey.invite")
    assert (event.actor, event.object_id, event.detail) == (
        "agent@test.example",
        str(survey.id),
        f"n={TIER_MEMBERS[tier]}",
    )


def test_a_failed_invitation_leaves_neither_the_invitations_nor_their_audit_event(client, auth):
    survey = make_survey()
    customer = make_customer()
    auth.login(Role.AGENT)
    # Fails as the invitation goes in, its audit event already written in the same transaction.
    when = "EXISTS (SELECT 1 FROM audit_event WHERE action = 'survey.invite')"
    with failing_after_insert("survey_invitation", when):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            post_invite(client, survey, customer=customer.member_no)
    assert db.session.scalar(sa.select(sa.func.count(Invitation.id))) == 0
    assert audit_events("survey.invite") == []


def test_marking_links_sent_is_audited_by_the_member_of_staff(client, auth):
    survey = make_survey()
    invitations = [invite(survey, make_customer().id) for _ in range(2)]
    auth.login(Role.AGENT)
    ids = ",".join(str(i.id) for i in invitations)
    token = csrf_token(client.get("/admin/survey_invite/").text)
    assert client.post("/admin/survey_invite/sent", data={"ids": ids, "csrf_token": token}).status_code == 302
    assert set(db.session.scalars(sa.select(Invitation.status))) == {"sent"}
    (event,) = audit_events("survey_invitation.sent")
    assert (event.actor, event.detail, event.fields) == ("agent@test.example", "n=2", "status")


@pytest.mark.parametrize("role, audited", [(Role.AGENT, True), (Role.ANALYST, False)])
def test_results_with_member_numbers_are_audited(client, auth, role, audited):
    """Results showing who wrote what are audited; an analyst's masked view is not."""
    survey = make_survey()
    invited_answer(survey)
    auth.login(role)
    assert client.get(f"/admin/survey_results/{survey.id}").status_code == 200
    events = audit_events("survey.results")
    assert [(e.object_id, e.fields) for e in events] == (
        [(str(survey.id), "member_no,text")] if audited else []
    )
