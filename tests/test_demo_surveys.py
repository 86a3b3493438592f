"""Demo surveys: `flask seed-demo --responses` fills the survey pages with twelve weeks of answers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.customer import Customer
from models.surveys.answers import Answer, SurveyResponse
from models.surveys.builder import Question, Survey
from models.surveys.invitations import Invitation
from models.surveys.scales import needs_follow_up
from models.tickets.ticket import Ticket

SEED_ARGS = ["seed-demo", "--customers", "60", "--tickets", "40", "--responses", "80", "--seed", "7"]


@pytest.fixture
def seeded(runner, app):
    result = runner.invoke(args=SEED_ARGS)
    assert result.exit_code == 0, result.output
    return result


def _count(query) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))


def _customer_responses():
    """Responses to the store and delivery surveys (not ticket ratings)."""
    return (
        sa.select(SurveyResponse)
        .outerjoin(Invitation, Invitation.id == SurveyResponse.invitation_id)
        .where(Invitation.ticket_id.is_(None))
    )


def test_three_surveys_in_both_languages(seeded):
    surveys = {s.title: s for s in db.session.scalars(sa.select(Survey))}
    assert set(surveys) == {"门店购物体验调查", "Delivery satisfaction", "服务满意度 · Support satisfaction"}
    store, delivery = surveys["门店购物体验调查"], surveys["Delivery satisfaction"]
    support = surveys["服务满意度 · Support satisfaction"]
    assert (store.language, store.public_link, store.public_slug) == ("zh_Hans_CN", True, "store-visit")
    assert (delivery.language, delivery.public_link, delivery.public_slug) == ("en", True, "delivery")
    assert support.send_on_resolution and not support.public_link
    assert [q.kind for q in store.questions] == ["nps", "rating", "single", "multiple", "text"]
    assert "徐家汇店" in store.questions[2].choices
    assert [q.kind for q in delivery.questions] == ["nps", "rating", "single", "text"]
    assert [q.kind for q in support.questions] == ["rating", "text"]
    assert "Surveys now: 3 surveys, 80 responses" in seeded.output


def test_responses_spread_over_the_weeks_from_customers_of_each_language(seeded):
    assert _count(_customer_responses()) == 80
    now = utcnow()
    opened = db.session.scalar(sa.select(sa.func.min(Survey.opens_at)))
    times = list(db.session.scalars(sa.select(SurveyResponse.submitted_at)))
    assert all(opened < moment <= now for moment in times)
    assert len({(now - moment).days // 7 for moment in times}) >= 10  # a weekly trend, not one day
    languages = db.session.scalars(
        sa.select(Customer.language)
        .join(SurveyResponse, SurveyResponse.customer_id == Customer.id)
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .where(Customer.language == Survey.language)
        .distinct()
    )
    assert set(languages) == {"zh_Hans_CN", "en"}
    anonymous = _count(sa.select(SurveyResponse.id).where(SurveyResponse.invitation_id.is_(None)))
    assert 0 < anonymous < 40


def test_comments_are_written_in_the_surveys_language(seeded):
    texts = db.session.execute(
        sa.select(Answer.text, Survey.title)
        .join(SurveyResponse, SurveyResponse.id == Answer.response_id)
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .where(Answer.text.is_not(None))
    ).all()
    chinese = re.compile(r"[\u4e00-\u9fff]")
    assert any(chinese.search(text) for text, title in texts if title == "门店购物体验调查")
    english = [text for text, title in texts if title == "Delivery satisfaction"]
    assert english and not any(chinese.search(text) for text in english)


def test_invitations_are_left_in_every_status(seeded):
    statuses = set(db.session.scalars(sa.select(Invitation.status).distinct()))
    assert statuses == {"created", "sent", "opened", "responded", "expired"}
    now = utcnow()
    for invitation in db.session.scalars(sa.select(Invitation).where(Invitation.status == "expired")):
        assert invitation.expires_at <= now
    for invitation in db.session.scalars(sa.select(Invitation).where(Invitation.status == "responded")):
        assert (
            invitation.created_at <= invitation.opened_at <= invitation.responded_at < invitation.expires_at
        )


def test_resolved_tickets_are_rated_by_their_customers(seeded):
    rated = list(db.session.scalars(sa.select(Ticket).where(Ticket.csat_score.is_not(None))))
    assert rated and all(1 <= t.csat_score <= 5 for t in rated)
    assert all(t.owner_id is not None and t.csat_at >= t.resolved_at for t in rated)
    asked = _count(sa.select(Invitation.id).where(Invitation.ticket_id.is_not(None)))
    assert len(rated) > asked / 2


def test_every_detractor_has_a_follow_up_ticket(seeded):
    rows = db.session.execute(
        sa.select(Question, Answer.number, SurveyResponse)
        .join(Answer, Answer.question_id == Question.id)
        .join(SurveyResponse, SurveyResponse.id == Answer.response_id)
        .where(Question.kind.in_(("nps", "rating")))
    ).all()
    detractors = {r.id: r for q, number, r in rows if needs_follow_up(q.kind, number, q.survey.detractor_nps)}
    assert detractors and all(r.follow_up_ticket_id is not None for r in detractors.values())
    total = _count(sa.select(SurveyResponse.id))
    assert len(detractors) <= 0.15 * total
    followed = _count(sa.select(SurveyResponse.id).where(SurveyResponse.follow_up_ticket_id.is_not(None)))
    assert followed == len(detractors)
    week_ago = utcnow() - timedelta(days=7)
    old_follow_ups = db.session.scalars(
        sa.select(Ticket.status)
        .join(SurveyResponse, SurveyResponse.follow_up_ticket_id == Ticket.id)
        .where(SurveyResponse.submitted_at < week_ago)
    )
    assert "new" not in set(old_follow_ups)  # older complaints were taken on by an agent


def test_running_again_adds_no_surveys(seeded, runner):
    before = _count(sa.select(SurveyResponse.id))
    again = runner.invoke(args=["seed-demo", "--customers", "5", "--tickets", "5", "--responses", "80"])
    assert again.exit_code == 0, again.output
    assert _count(sa.select(Survey.id)) == 3
    assert _count(sa.select(SurveyResponse.id)) == before


def test_no_surveys_without_responses(runner, app):
    result = runner.invoke(args=["seed-demo", "--customers", "5", "--tickets", "5"])
    assert result.exit_code == 0, result.output
    assert _count(sa.select(Survey.id)) == 0 and "Surveys" not in result.output


def test_bootstrap_seeds_surveys(runner, app):
    result = runner.invoke(
        args=["bootstrap", "--demo", "--customers", "30", "--tickets", "20", "--responses", "30"]
    )
    assert result.exit_code == 0, result.output
    assert "Demo surveys:   3 surveys, 30 responses" in result.output
