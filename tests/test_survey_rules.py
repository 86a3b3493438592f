"""Survey rules: single-use hashed tokens, expiry, answer checks, one response per invitation, follow-ups."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import db
from models.survey import (
    Invitation,
    InvitationGone,
    Question,
    Survey,
    SurveyResponse,
    create_invitation,
    open_invitation,
)
from models.survey_answers import AnswersInvalid, submit_response
from models.ticket import Ticket
from tests.factories import make_customer

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def make_survey() -> Survey:
    survey = Survey(title="After your visit", language="en", public_link=True)
    survey.questions = [
        Question(position=1, kind="nps", prompt="How likely are you to recommend us?", required=True),
        Question(position=2, kind="rating", prompt="How satisfied were you?", required=False),
        Question(
            position=3, kind="single", prompt="Which shop?", required=False, options="Nanjing Rd\nXujiahui"
        ),
        Question(position=4, kind="text", prompt="Anything else?", required=False),
    ]
    db.session.add(survey)
    db.session.commit()
    return survey


def test_tokens_are_random_long_and_stored_only_as_a_hash(app):
    survey = make_survey()
    invitation, token = create_invitation(survey, make_customer().id, now=NOW)
    db.session.commit()
    assert len(token) >= 32  # 192 bits, URL-safe base64
    assert token not in invitation.token_hash and len(invitation.token_hash) == 64
    assert open_invitation(token, NOW).id == invitation.id
    assert open_invitation(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW) is None


def test_an_expired_or_used_link_is_gone(app):
    survey = make_survey()
    invitation, token = create_invitation(survey, None, days_valid=1, now=NOW)
    db.session.commit()
    with pytest.raises(InvitationGone):
        open_invitation(token, NOW + timedelta(days=2))
    assert db.session.get(Invitation, invitation.id).status == "expired"
    fresh, fresh_token = create_invitation(survey, None, now=NOW)
    db.session.commit()
    submit_response(survey, {survey.questions[0].id: 9}, open_invitation(fresh_token, NOW), NOW)
    with pytest.raises(InvitationGone):
        open_invitation(fresh_token, NOW)


def test_answers_are_checked_and_nothing_is_stored_on_error(app):
    survey = make_survey()
    nps, rating, shop, _text = survey.questions
    with pytest.raises(AnswersInvalid) as caught:
        submit_response(survey, {nps.id: 11, rating.id: 0, shop.id: "Mars"}, None, NOW)
    assert set(caught.value.errors) == {nps.id, rating.id, shop.id}
    with pytest.raises(AnswersInvalid):
        submit_response(survey, {}, None, NOW)  # the NPS question is required
    assert db.session.scalar(sa.select(sa.func.count(SurveyResponse.id))) == 0


def test_free_text_answers_are_sealed(app):
    survey = make_survey()
    submit_response(
        survey, {survey.questions[0].id: 10, survey.questions[3].id: "王芳 13912345678"}, None, NOW
    )
    stored = db.session.execute(sa.text("SELECT text FROM survey_answer WHERE text IS NOT NULL")).scalar_one()
    assert "13912345678" not in stored and stored.startswith("v1:")


@pytest.mark.parametrize(
    "answers, follow_up", [({0: 6}, True), ({0: 7}, False), ({0: 9, 1: 2}, True), ({0: 9, 1: 3}, False)]
)
def test_a_detractor_opens_a_follow_up_ticket(app, answers, follow_up):
    survey = make_survey()
    customer = make_customer()
    invitation, token = create_invitation(survey, customer.id, now=NOW)
    db.session.commit()
    raw = {survey.questions[index].id: value for index, value in answers.items()}
    response = submit_response(survey, raw, open_invitation(token, NOW), NOW)
    tickets = db.session.scalars(sa.select(Ticket)).all()
    if follow_up:
        assert len(tickets) == 1 and response.follow_up_ticket_id == tickets[0].id
        assert tickets[0].customer_id == customer.id and tickets[0].priority == "high"
    else:
        assert tickets == [] and response.follow_up_ticket_id is None


def race(app, attempt) -> list[str]:
    """Run `attempt(barrier)` in two threads at once, each in its own app context; their outcomes."""
    barrier, outcomes = threading.Barrier(2), []

    def run():
        with app.app_context():
            try:
                outcomes.append(attempt(barrier))
            except InvitationGone:
                outcomes.append("gone")
            except Exception as exc:  # reported by the caller's assertion
                outcomes.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_the_same_link_submitted_twice_at_once_stores_one_response(app):
    """Two threads post the same invitation at the same moment: the database keeps one."""
    survey = make_survey()
    survey_id, question_id = survey.id, survey.questions[0].id
    _invitation, token = create_invitation(survey, None, now=NOW)
    db.session.commit()

    def submit(barrier):
        invitation = open_invitation(token, NOW)
        mine = db.session.get(Survey, survey_id)
        db.session.commit()  # end the read: both requests have seen an open invitation
        barrier.wait(timeout=30)
        submit_response(mine, {question_id: 10}, db.session.get(Invitation, invitation.id), NOW)
        return "stored"

    assert sorted(race(app, submit)) == ["gone", "stored"]
    assert db.session.scalar(sa.select(sa.func.count(SurveyResponse.id))) == 1


def test_the_same_anonymous_form_sent_twice_at_once_is_stored_once(app):
    """A double click on an anonymous form: both requests get the one stored response."""
    survey = make_survey()
    survey_id, question_id = survey.id, survey.questions[0].id

    def submit(barrier):
        mine = db.session.get(Survey, survey_id)
        db.session.commit()
        barrier.wait(timeout=30)
        return submit_response(mine, {question_id: 9}, None, NOW, submission_key="k" * 32).id

    db.session.commit()  # end this test's read, or SQLite shows it the database as it was
    outcomes = race(app, submit)
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1], outcomes
    assert db.session.scalar(sa.select(sa.func.count(SurveyResponse.id))) == 1
