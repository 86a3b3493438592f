"""Survey rules: single-use hashed tokens, expiry, answer checks, one response per invitation, follow-ups."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.events import DetractorAnswered, TicketResolved, _handlers, handles, load_handlers
from models.surveys.answers import AnswersInvalid, SurveyResponse, submit_response
from models.surveys.builder import Question, Survey
from models.surveys.invitations import (
    Invitation,
    InvitationGone,
    create_invitation,
    expire_invitations,
    hash_token,
    open_invitation,
)
from models.surveys.scales import csat_band, needs_follow_up, nps_band
from models.tickets.ticket import Ticket, close_tickets, move_ticket
from models.uow import SYSTEM, Actor, unit_of_work
from tests.factories import make_customer, make_ticket

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
VISITOR = Actor.anonymous("203.0.113.7")


def make_survey(**fields) -> Survey:
    survey = Survey(title="After your visit", language="en", **({"public_link": True} | fields))
    survey.questions = [
        Question(position=1, kind="nps", prompt="How likely are you to recommend us?", required=True),
        Question(position=2, kind="rating", prompt="How satisfied were you?", required=False),
        Question(
            position=3, kind="single", prompt="Which shop?", required=False, options="Nanjing Rd\nXujiahui"
        ),
        Question(position=4, kind="text", prompt="Anything else?", required=False),
    ]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def invite(survey: Survey, customer_id: int | None = None, **kwargs) -> tuple[Invitation, str]:
    with unit_of_work(SYSTEM):
        invitation, token = create_invitation(survey, customer_id, **kwargs)
    return invitation, token


def answer(survey, raw: dict, invitation=None, now=NOW, key: str | None = None):
    """Submit answers the way the public pages do: in an anonymous visitor's unit of work."""
    with unit_of_work(VISITOR):
        return submit_response(survey, raw, invitation, now, submission_key=key)


def opened(token: str, now=NOW) -> Invitation | None:
    with unit_of_work(VISITOR):
        return open_invitation(token, now)


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_tokens_are_random_long_and_stored_only_as_a_hash(app):
    survey = make_survey()
    invitation, token = invite(survey, make_customer().id, now=NOW)
    assert len(token) >= 32  # 192 bits, URL-safe base64
    assert token not in invitation.token_hash and invitation.token_hash == hash_token(token)
    assert opened(token).id == invitation.id
    assert opened(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_an_expired_or_used_link_is_gone(app):
    survey = make_survey()
    invitation, token = invite(survey, days_valid=1, now=NOW)
    with pytest.raises(InvitationGone, match="expired"):
        opened(token, NOW + timedelta(days=2))
    fresh, fresh_token = invite(survey, now=NOW)
    answer(survey, {survey.questions[0].id: 9}, opened(fresh_token))
    with pytest.raises(InvitationGone, match="used already"):
        opened(fresh_token)


def test_expiry_is_shown_at_once_and_stored_only_by_the_job(app):
    """Past its expiry an invitation reads as expired; only expire_invitations writes the status."""
    survey = make_survey()
    invitation, token = invite(survey, days_valid=1, now=NOW)
    later = NOW + timedelta(days=2)
    with pytest.raises(InvitationGone):
        opened(token, later)
    db.session.expire_all()
    stored = db.session.get(Invitation, invitation.id)
    assert (stored.status, stored.status_at(later), stored.status_at(NOW)) == (
        "created",
        "expired",
        "created",
    )
    with unit_of_work(Actor.system("job:expire-invitations")):
        assert expire_invitations(later) == 1
    with unit_of_work(SYSTEM):
        assert expire_invitations(later) == 0  # idempotent
    db.session.expire_all()
    assert db.session.get(Invitation, invitation.id).status == "expired"
    (event,) = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "survey_invitation.expire")
    )
    assert (event.actor, event.detail, event.fields) == ("job:expire-invitations", "n=1", "status")


def test_opening_a_link_twice_marks_it_opened_once(app):
    survey = make_survey()
    invitation, token = invite(survey, now=NOW)
    opened(token, NOW)
    opened(token, NOW + timedelta(hours=1))
    db.session.expire_all()
    stored = db.session.get(Invitation, invitation.id)
    assert (stored.status, stored.opened_at) == ("opened", NOW)


def test_answers_are_checked_and_nothing_is_stored_on_error(app):
    survey = make_survey()
    nps, rating, shop, _text = survey.questions
    with pytest.raises(AnswersInvalid) as caught:
        answer(survey, {nps.id: 11, rating.id: 0, shop.id: "Mars"})
    assert set(caught.value.errors) == {nps.id, rating.id, shop.id}
    with pytest.raises(AnswersInvalid):
        answer(survey, {})  # the NPS question is required
    assert count(SurveyResponse) == 0


def test_free_text_answers_are_sealed(app):
    survey = make_survey()
    answer(survey, {survey.questions[0].id: 10, survey.questions[3].id: "王芳 13912345678"})
    stored = db.session.execute(sa.text("SELECT text FROM survey_answer WHERE text IS NOT NULL")).scalar_one()
    assert "13912345678" not in stored and stored.startswith("v1:")


@pytest.mark.parametrize(
    "value, band", [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter")]
)
def test_nps_bands(value, band):
    assert nps_band(value) == band


@pytest.mark.parametrize(
    "value, band", [(1, "dissatisfied"), (2, "dissatisfied"), (3, "neutral"), (4, "satisfied")]
)
def test_csat_bands(value, band):
    assert csat_band(value) == band


@pytest.mark.parametrize(
    "kind, number, threshold, follow_up",
    [
        ("nps", 6, 6, True),
        ("nps", 7, 6, False),
        ("nps", 4, 3, False),
        ("rating", 2, 6, True),
        ("rating", 3, 0, False),
    ],
)
def test_which_answers_call_for_a_follow_up(kind, number, threshold, follow_up):
    assert needs_follow_up(kind, number, threshold) is follow_up


@pytest.mark.parametrize(
    "answers, follow_up", [({0: 6}, True), ({0: 7}, False), ({0: 9, 1: 2}, True), ({0: 9, 1: 3}, False)]
)
def test_a_detractor_opens_a_follow_up_ticket(app, answers, follow_up):
    survey = make_survey()
    customer = make_customer()
    _invitation, token = invite(survey, customer.id, now=NOW)
    raw = {survey.questions[index].id: value for index, value in answers.items()}
    stored = answer(survey, raw, opened(token))
    tickets = db.session.scalars(sa.select(Ticket)).all()
    response = db.session.get(SurveyResponse, stored.id)
    if follow_up:
        assert len(tickets) == 1 and response.follow_up_ticket_id == tickets[0].id
        assert tickets[0].customer_id == customer.id and tickets[0].priority == "high"
    else:
        assert tickets == [] and response.follow_up_ticket_id is None


def test_a_failing_reaction_leaves_neither_the_response_nor_the_claim(app):
    """A handler of DetractorAnswered that fails: no response, no answers, no ticket, the link unused."""
    survey = make_survey()
    invitation, token = invite(survey, make_customer().id, now=NOW)
    load_handlers()

    def fail(uow, event):
        raise RuntimeError("the follow-up could not be opened")

    handles(DetractorAnswered)(fail)
    try:
        with pytest.raises(RuntimeError, match="could not be opened"):
            answer(survey, {survey.questions[0].id: 2}, invitation.id, key="k" * 32)
    finally:
        _handlers[DetractorAnswered].remove(fail)
    assert (count(SurveyResponse), count(Ticket)) == (0, 0)
    db.session.expire_all()
    assert db.session.get(Invitation, invitation.id).status == "created"
    # The link still works: the same form sent again is stored now.
    answer(survey, {survey.questions[0].id: 2}, invitation.id, key="k" * 32)
    assert (count(SurveyResponse), count(Ticket)) == (1, 1)


def resolve_by_move(ticket: Ticket) -> None:
    move_ticket(ticket, "resolved", NOW)


def close_at_once(ticket: Ticket) -> None:
    move_ticket(ticket, "closed", NOW)


def close_in_bulk(ticket: Ticket) -> None:
    close_tickets([ticket], NOW)


@pytest.mark.parametrize("resolve", [resolve_by_move, close_at_once, close_in_bulk])
def test_a_resolved_tickets_customer_gets_exactly_one_csat_invitation(app, resolve):
    """Whatever resolves a ticket, its customer is invited once, even if it is reopened and resolved again."""
    survey = make_survey(send_on_resolution=True, public_link=False)
    customer = make_customer()
    ticket, _code = make_ticket(customer_id=customer.id)
    with unit_of_work(Actor.system("job:test")) as uow:
        resolve(db.session.get(Ticket, ticket.id))
    token = uow.notices["survey_link"]
    with unit_of_work(SYSTEM) as again:
        move_ticket(db.session.get(Ticket, ticket.id), "investigating", NOW)
        move_ticket(db.session.get(Ticket, ticket.id), "resolved", NOW)
    assert "survey_link" not in again.notices
    (invitation,) = db.session.scalars(sa.select(Invitation))
    assert (invitation.survey_id, invitation.ticket_id, invitation.customer_id) == (
        survey.id,
        ticket.id,
        customer.id,
    )
    assert invitation.token_hash == hash_token(token) and invitation.expires_at == NOW + timedelta(days=7)
    (event,) = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "survey.invite"))
    assert (event.actor, event.object_id, event.detail) == (
        "job:test",
        str(survey.id),
        f"n=1 ticket={ticket.id}",
    )


def test_a_failed_resolution_leaves_no_invitation_and_no_audit_event(app):
    """A handler after the invitation that fails: the ticket stays open, no invitation, no audit event."""
    make_survey(send_on_resolution=True)
    ticket, _code = make_ticket(customer_id=make_customer().id)
    load_handlers()

    def fail(uow, event):
        raise RuntimeError("after the invitation")

    handles(TicketResolved)(fail)
    try:
        with pytest.raises(RuntimeError), unit_of_work(SYSTEM):
            move_ticket(db.session.get(Ticket, ticket.id), "resolved", NOW)
    finally:
        _handlers[TicketResolved].remove(fail)
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).status == "new"
    assert count(Invitation) == 0
    assert db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "survey.invite")).all() == []


def test_a_ticket_rating_is_kept_on_the_ticket(app):
    survey = make_survey(send_on_resolution=True)
    ticket, _code = make_ticket(customer_id=make_customer().id)
    with unit_of_work(SYSTEM) as uow:
        move_ticket(db.session.get(Ticket, ticket.id), "resolved", NOW)
    invitation = opened(uow.notices["survey_link"])
    answer(
        survey, {survey.questions[0].id: 9, survey.questions[1].id: 4}, invitation, NOW + timedelta(hours=1)
    )
    db.session.expire_all()
    rated = db.session.get(Ticket, ticket.id)
    assert (rated.csat_score, rated.csat_at) == (4, NOW + timedelta(hours=1))


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
    invitation, token = invite(survey, now=NOW)
    invitation_id = invitation.id
    db.session.commit()

    def submit(barrier):
        mine = db.session.get(Survey, survey_id)
        assert mine.questions and opened(token) is not None
        barrier.wait(timeout=30)
        answer(mine, {question_id: 10}, invitation_id)
        return "stored"

    assert sorted(race(app, submit)) == ["gone", "stored"]
    assert count(SurveyResponse) == 1


def test_the_same_anonymous_form_sent_twice_at_once_is_stored_once(app):
    """A double click on an anonymous form: both requests get the one stored response."""
    survey = make_survey()
    survey_id, question_id = survey.id, survey.questions[0].id

    def submit(barrier):
        mine = db.session.get(Survey, survey_id)
        assert mine.questions
        db.session.commit()
        barrier.wait(timeout=30)
        return answer(mine, {question_id: 9}, key="k" * 32).id

    db.session.commit()  # end this test's read, or SQLite shows it the database as it was
    outcomes = race(app, submit)
    assert len(outcomes) == 2 and outcomes[0] == outcomes[1], outcomes
    assert count(SurveyResponse) == 1
