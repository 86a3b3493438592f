"""A survey's results: response rate, NPS and CSAT, distributions, weekly trend, text, agents."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from insights.scores import CsatResult, NpsResult, csat, distribution, nps
from models import db
from models.customer import Customer
from models.surveys.answers import Answer, SurveyResponse
from models.surveys.builder import Question, Survey
from models.surveys.invitations import INVITATION_STATUSES, Invitation, status_now_expression
from models.surveys.scales import CSAT_SATISFIED_MIN, SCALES
from models.tickets.ticket import Ticket
from models.user import StaffUser

TEXT_SHOWN = 100  # the newest free-text answers on the page; the export has them all


@dataclass
class QuestionResult:
    question: Question
    answered: int = 0
    counts: list[tuple[str, int]] = field(default_factory=list)  # (value or option, answers)
    nps: NpsResult | None = None
    csat: CsatResult | None = None
    texts: list[tuple[datetime, str, str | None]] = field(default_factory=list)  # (when, text, member no.)


@dataclass
class Week:
    start: date
    responses: int
    nps: float | None
    csat: float | None


@dataclass
class AgentScore:
    agent: str
    rated: int
    average: float
    csat: float


@dataclass
class SurveyReport:
    survey: Survey
    responses: int
    invitations: dict[str, int]
    response_rate: float | None
    nps: NpsResult
    csat: CsatResult
    questions: list[QuestionResult]
    weeks: list[Week]
    agents: list[AgentScore]
    follow_ups: int


def _in_range(column, start: datetime | None, end: datetime | None) -> list:
    clauses = []
    if start is not None:
        clauses.append(column >= start)
    if end is not None:
        clauses.append(column < end)
    return clauses


def responses_query(
    survey: Survey, start: datetime | None, end: datetime | None, with_customer: bool = False
) -> sa.Select:
    """A survey's responses submitted in [start, end), oldest first, their answers loaded with them."""
    query = (
        sa.select(SurveyResponse)
        .where(SurveyResponse.survey_id == survey.id, *_in_range(SurveyResponse.submitted_at, start, end))
        .order_by(SurveyResponse.id)
        .options(selectinload(SurveyResponse.answers))
    )
    return query.options(selectinload(SurveyResponse.customer)) if with_customer else query


def _week_start(moment: datetime, zone: tzinfo) -> date:
    local = moment.astimezone(zone).date()
    return local - timedelta(days=local.weekday())


def survey_report(
    survey: Survey,
    start: datetime | None = None,
    end: datetime | None = None,
    zone: tzinfo | None = None,
    with_identity: bool = False,
    now: datetime | None = None,
) -> SurveyReport:
    """Everything the results page shows, for responses submitted in [start, end).

    Free text carries the customer's member number only when `with_identity` is set
    (staff allowed to see personal data); analysts read it without. Invitations are counted
    by where they stand at `now` (past their expiry and unanswered: expired).
    """
    zone = zone or datetime.now().astimezone().tzinfo or UTC
    in_range = [SurveyResponse.survey_id == survey.id, *_in_range(SurveyResponse.submitted_at, start, end)]
    responses = db.session.scalar(sa.select(sa.func.count(SurveyResponse.id)).where(*in_range)) or 0
    shown = (
        sa.select(status_now_expression(now or datetime.now(UTC)).label("status"))
        .where(Invitation.survey_id == survey.id, *_in_range(Invitation.created_at, start, end))
        .subquery()
    )
    counted = db.session.execute(sa.select(shown.c.status, sa.func.count()).group_by(shown.c.status))
    statuses: dict[str, int] = {status: n for status, n in counted}
    invitations = {status: statuses.get(status, 0) for status in INVITATION_STATUSES}
    invited = sum(invitations.values())
    rate = round(100 * invitations["responded"] / invited, 1) if invited else None

    rows = db.session.execute(
        sa.select(Answer.question_id, Answer.number, Answer.choices, SurveyResponse.submitted_at)
        .join(SurveyResponse, Answer.response_id == SurveyResponse.id)
        .where(*in_range, Answer.text.is_(None))
    ).all()
    by_question: dict[int, list] = defaultdict(list)
    for question_id, number, choices, submitted in rows:
        by_question[question_id].append((number, choices, submitted))
    results = [_question_result(q, by_question.get(q.id, [])) for q in survey.questions]
    _add_texts(survey, results, in_range, with_identity)

    kinds = {q.id: q.kind for q in survey.questions}
    numbers = {
        kind: [n for qid, n, _c, _s in rows if kinds.get(qid) == kind and n is not None]
        for kind in ("nps", "rating")
    }
    follow_ups = db.session.scalar(
        sa.select(sa.func.count(SurveyResponse.id)).where(
            *in_range, SurveyResponse.follow_up_ticket_id.is_not(None)
        )
    )
    return SurveyReport(
        survey=survey,
        responses=responses,
        invitations=invitations,
        response_rate=rate,
        nps=nps(numbers["nps"]),
        csat=csat(numbers["rating"]),
        questions=results,
        weeks=_weeks(survey, in_range, list(rows), kinds, zone),
        agents=agent_scores(survey, start, end),
        follow_ups=follow_ups or 0,
    )


def _question_result(question: Question, answers: list) -> QuestionResult:
    result = QuestionResult(question, answered=len(answers))
    if question.kind in ("nps", "rating"):
        values = [n for n, _c, _s in answers if n is not None]
        low, high = SCALES[question.kind]
        result.counts = [(str(v), n) for v, n in distribution(values, low, high)]
        if question.kind == "nps":
            result.nps = nps(values)
        else:
            result.csat = csat(values)
    elif question.kind in ("single", "multiple"):
        picked = Counter(choice for _n, c, _s in answers if c for choice in json.loads(c))
        known = question.choices
        result.counts = [(choice, picked.get(choice, 0)) for choice in known]
        result.counts += [(c, n) for c, n in picked.items() if c not in known]  # options renamed since
    return result


def _add_texts(survey: Survey, results: list[QuestionResult], in_range: list, with_identity: bool) -> None:
    text_questions = {r.question.id: r for r in results if r.question.kind == "text"}
    if not text_questions:
        return
    for question_id, result in text_questions.items():
        query = (
            sa.select(Answer.text, SurveyResponse.submitted_at, Customer.member_no)
            .join(SurveyResponse, Answer.response_id == SurveyResponse.id)
            .outerjoin(Customer, Customer.id == SurveyResponse.customer_id)
            .where(*in_range, Answer.question_id == question_id, Answer.text.is_not(None))
            .order_by(SurveyResponse.submitted_at.desc())
        )
        result.answered = (
            db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
        )
        result.texts = [
            (submitted, text or "", member_no if with_identity else None)
            for text, submitted, member_no in db.session.execute(query.limit(TEXT_SHOWN))
        ]


def _weeks(survey: Survey, in_range: list, rows: list, kinds: dict, zone: tzinfo) -> list[Week]:
    """Responses, NPS and CSAT per calendar week (Monday first, in the viewer's time zone)."""
    submitted = db.session.scalars(sa.select(SurveyResponse.submitted_at).where(*in_range))
    counts = Counter(_week_start(moment, zone) for moment in submitted)
    scores: dict[date, dict[str, list[int]]] = defaultdict(lambda: {"nps": [], "rating": []})
    for question_id, number, _choices, moment in rows:
        kind = kinds.get(question_id)
        if kind in ("nps", "rating") and number is not None:
            scores[_week_start(moment, zone)][kind].append(number)
    return [
        Week(week, counts[week], nps(scores[week]["nps"]).score, csat(scores[week]["rating"]).score)
        for week in sorted(counts)
    ]


def agent_scores(
    survey: Survey, start: datetime | None = None, end: datetime | None = None
) -> list[AgentScore]:
    """Satisfaction per agent: the ticket owners rated through this survey's invitations."""
    rated = sa.func.count(Ticket.id)
    query = (
        sa.select(
            StaffUser,
            rated,
            sa.func.avg(Ticket.csat_score),
            sa.func.sum(sa.case((Ticket.csat_score >= CSAT_SATISFIED_MIN, 1), else_=0)),
        )
        .join(Ticket, Ticket.owner_id == StaffUser.id)
        .join(Invitation, Invitation.ticket_id == Ticket.id)
        .where(
            Invitation.survey_id == survey.id,
            Invitation.status == "responded",
            Ticket.csat_score.is_not(None),
            *_in_range(Ticket.csat_at, start, end),
        )
        .group_by(StaffUser.id)
        .order_by(rated.desc())
    )
    return [
        AgentScore(str(agent), count, round(float(average), 2), round(100 * satisfied / count, 1))
        for agent, count, average, satisfied in db.session.execute(query)
    ]


@dataclass
class SurveyLine:
    survey: Survey
    responses: int
    nps: float | None
    csat: float | None


def _score_counts(*where) -> dict[tuple[int, str], Counter]:
    """How often each NPS and rating value was given, per survey: a few rows, counted in SQL."""
    answers = sa.func.count(Answer.id)
    query = (
        sa.select(Question.survey_id, Question.kind, Answer.number, answers)
        .join(Answer, Answer.question_id == Question.id)
        .where(Question.kind.in_(("nps", "rating")), Answer.number.is_not(None), *where)
        .group_by(Question.survey_id, Question.kind, Answer.number)
    )
    counts: dict[tuple[int, str], Counter] = defaultdict(Counter)
    for survey_id, kind, number, n in db.session.execute(query):
        counts[(survey_id, kind)][number] += n
    return counts


def _scores(counts: dict[tuple[int, str], Counter], kind: str, survey_id: int | None = None) -> list[int]:
    """The answers of one kind, of one survey or of all, as the score functions take them."""
    return [
        value
        for (sid, k), counter in counts.items()
        if k == kind and survey_id in (None, sid)
        for value in counter.elements()
    ]


def survey_overview() -> list[SurveyLine]:
    """Every survey, newest first, with its responses and all-time NPS and CSAT."""
    surveys = db.session.scalars(sa.select(Survey).order_by(Survey.id.desc())).all()
    responses = sa.func.count(SurveyResponse.id)
    counts = dict(
        db.session.execute(
            sa.select(SurveyResponse.survey_id, responses).group_by(SurveyResponse.survey_id)
        ).all()
    )
    scores = _score_counts()
    return [
        SurveyLine(
            s,
            counts.get(s.id, 0),
            nps(_scores(scores, "nps", s.id)).score,
            csat(_scores(scores, "rating", s.id)).score,
        )
        for s in surveys
    ]


@dataclass
class Satisfaction:
    responses: int
    nps: NpsResult
    csat: CsatResult


def satisfaction_since(since: datetime) -> Satisfaction:
    """NPS and CSAT over every survey's answers submitted since a moment (the home page)."""
    recent = Answer.response_id.in_(sa.select(SurveyResponse.id).where(SurveyResponse.submitted_at >= since))
    scores = _score_counts(recent)
    responses = db.session.scalar(
        sa.select(sa.func.count(SurveyResponse.id)).where(SurveyResponse.submitted_at >= since)
    )
    return Satisfaction(responses or 0, nps(_scores(scores, "nps")), csat(_scores(scores, "rating")))
