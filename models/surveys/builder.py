"""The survey builder: surveys, their ordered questions, and the rules a survey is saved by."""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Model, UTCDateTime, db, one_of, utcnow
from models.surveys.scales import DETRACTOR_NPS

QUESTION_KINDS = ("nps", "rating", "single", "multiple", "text")
QUESTION_KIND_LABELS = {
    "nps": _l("NPS (0–10)"),
    "rating": _l("Rating (1–5, CSAT)"),
    "single": _l("Single choice"),
    "multiple": _l("Multiple choice"),
    "text": _l("Free text"),
}


def open_between(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> bool:
    """Whether `now` falls in a survey's window (either end may be open)."""
    return (opens_at is None or opens_at <= now) and (closes_at is None or now < closes_at)


class SurveyError(ValueError):
    """A survey operation the rules refuse."""


class Survey(Model):
    """A questionnaire, answered through personal invitations or an anonymous public link."""

    __tablename__ = "survey"
    __table_args__ = (sa.CheckConstraint("detractor_nps BETWEEN 0 AND 10", name="detractor_nps"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    intro: Mapped[str] = mapped_column(sa.Text, default="")
    thank_you: Mapped[str] = mapped_column(sa.Text, default="")
    language: Mapped[str] = mapped_column(sa.String(16), default="zh_Hans_CN")
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    public_slug: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    # The anonymous link /p/<public_slug> answers only while this is on.
    public_link: Mapped[bool] = mapped_column(default=False)
    # An NPS answer at or under this opens a follow-up ticket.
    detractor_nps: Mapped[int] = mapped_column(default=DETRACTOR_NPS)
    # Resolving a ticket invites its customer to this survey (the newest open one wins).
    send_on_resolution: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    questions: Mapped[list[Question]] = relationship(
        back_populates="survey", order_by="Question.position", cascade="all, delete-orphan"
    )

    def __str__(self) -> str:
        return self.title

    def is_open(self, now: datetime) -> bool:
        return open_between(self.opens_at, self.closes_at, now)


class Question(Model):
    """One question: NPS 0–10, rating 1–5 (CSAT), single or multiple choice, or free text."""

    __tablename__ = "survey_question"
    __table_args__ = (one_of("kind", QUESTION_KINDS, "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(sa.ForeignKey("survey.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(sa.String(16))
    prompt: Mapped[str] = mapped_column(sa.String(500))
    required: Mapped[bool] = mapped_column(default=True)
    options: Mapped[str] = mapped_column(sa.Text, default="")  # one choice per line

    survey: Mapped[Survey] = relationship(back_populates="questions")

    def __str__(self) -> str:
        return self.prompt

    @property
    def choices(self) -> list[str]:
        return [line.strip() for line in self.options.splitlines() if line.strip()]


def survey_problems(survey: Survey) -> list[str]:
    """What keeps a survey from being saved: checked when staff save it."""
    problems = []
    if survey.opens_at and survey.closes_at and survey.closes_at <= survey.opens_at:
        problems.append(str(_l("The survey must close after it opens.")))
    removed = set(db.session.deleted)
    questions = [q for q in survey.questions if q not in removed]
    if not questions:
        problems.append(str(_l("Add at least one question.")))
    for question in questions:
        if question.kind in ("single", "multiple") and len(set(question.choices)) < 2:
            problems.append(
                str(_l("“%(q)s” needs at least two different options, one per line.", q=question.prompt))
            )
    with db.session.no_autoflush:  # a flush would forget which kinds changed
        answered = _answered(q.id for q in survey.questions if q.id is not None)
    for question in survey.questions:
        if question.id not in answered:
            continue
        if question in removed:
            problems.append(str(_l("“%(q)s” has answers and cannot be deleted.", q=question.prompt)))
        elif sa.inspect(question).attrs.kind.history.deleted:
            problems.append(str(_l("“%(q)s” has answers; its type cannot change.", q=question.prompt)))
    return problems


def _answered(question_ids) -> set[int]:
    from models.surveys.answers import Answer  # answers build on the builder, not the other way

    ids = list(question_ids)
    if not ids:
        return set()
    query = sa.select(Answer.question_id).where(Answer.question_id.in_(ids)).distinct()
    return set(db.session.scalars(query))


def number_questions(survey: Survey) -> None:
    """Positions 1, 2, 3… in the order staff gave (questions without a position go last)."""
    ordered = sorted(survey.questions, key=lambda q: q.position if q.position else 10**6)
    for position, question in enumerate(ordered, start=1):
        question.position = position


def ensure_public_slug(survey: Survey) -> None:
    """A survey whose anonymous link is on gets a hard-to-guess slug if it has none."""
    if survey.public_link and not survey.public_slug:
        survey.public_slug = secrets.token_urlsafe(9)


def prepare_survey(survey: Survey) -> None:
    """Check a survey about to be saved (SurveyError naming every problem), then number and link it."""
    problems = survey_problems(survey)
    if problems:
        raise SurveyError(" ".join(problems))
    number_questions(survey)
    ensure_public_slug(survey)


def has_activity(survey_id: int) -> bool:
    """Whether a survey has invitations or responses (then it is kept, not deleted)."""
    from models.surveys.answers import SurveyResponse  # both build on the builder
    from models.surveys.invitations import Invitation

    invited = sa.select(Invitation.id).where(Invitation.survey_id == survey_id).limit(1)
    answered = sa.select(SurveyResponse.id).where(SurveyResponse.survey_id == survey_id).limit(1)
    return db.session.scalar(invited) is not None or db.session.scalar(answered) is not None


def check_deletable(survey: Survey) -> None:
    """Refuse to delete a survey with invitations or responses: they are kept, the survey closed."""
    if has_activity(survey.id):
        raise SurveyError(
            str(_l("This survey has invitations or responses, which are kept; close it instead."))
        )
