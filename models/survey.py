"""Surveys: questions, personal invitation links, responses, and the detractor follow-up ticket."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import UTCDateTime, begin_write, db, utcnow
from models.crypto import EncryptedText

QUESTION_KINDS = ("nps", "rating", "single", "multiple", "text")
INVITATION_STATUSES = ("created", "sent", "opened", "responded", "expired")
TOKEN_BYTES = 24  # 192 random bits
DETRACTOR_NPS = 6  # an NPS answer at or under this opens a follow-up ticket
DETRACTOR_CSAT = 2  # so does a CSAT (1–5) answer at or under this


class SurveyError(ValueError):
    """A survey operation the rules refuse."""


class InvitationGone(SurveyError):
    """The link was used or has expired (a friendly 410)."""


class AnswersInvalid(SurveyError):
    """Some answers are missing or malformed: `errors` maps question id → message."""

    def __init__(self, errors: dict[int, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _in(column: str, values, name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=name)


class Survey(db.Model):
    """A questionnaire, answered through personal invitations or an anonymous public link."""

    __tablename__ = "survey"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    intro: Mapped[str] = mapped_column(sa.Text, default="")
    thank_you: Mapped[str] = mapped_column(sa.Text, default="")
    language: Mapped[str] = mapped_column(sa.String(16), default="zh_Hans_CN")
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    public_slug: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    questions: Mapped[list[Question]] = relationship(
        back_populates="survey", order_by="Question.position", cascade="all, delete-orphan"
    )

    def __str__(self) -> str:
        return self.title

    def is_open(self, now: datetime) -> bool:
        return (self.opens_at is None or self.opens_at <= now) and (
            self.closes_at is None or now < self.closes_at
        )


class Question(db.Model):
    """One question: NPS 0–10, rating 1–5 (CSAT), single or multiple choice, or free text."""

    __tablename__ = "survey_question"
    __table_args__ = (_in("kind", QUESTION_KINDS, "kind"),)

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


class Invitation(db.Model):
    """A personal, single-use, expiring link; only a hash of its token is stored."""

    __tablename__ = "survey_invitation"
    __table_args__ = (_in("status", INVITATION_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(sa.ForeignKey("survey.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("customer.id", ondelete="SET NULL"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), default="created")
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id", ondelete="SET NULL"))
    purchase_id: Mapped[int | None] = mapped_column(sa.ForeignKey("purchase.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    survey = relationship(Survey)

    def __str__(self) -> str:
        return f"#{self.id} {self.status}"


class SurveyResponse(db.Model):
    """One submitted questionnaire; at most one per invitation, enforced by the database."""

    __tablename__ = "survey_response"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(sa.ForeignKey("survey.id"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("survey_invitation.id"), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("customer.id", ondelete="SET NULL"), index=True
    )
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    follow_up_ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket.id", ondelete="SET NULL"))

    answers: Mapped[list[Answer]] = relationship(back_populates="response", cascade="all, delete-orphan")

    def __str__(self) -> str:
        return f"response #{self.id}"


class Answer(db.Model):
    """One answer: a number (NPS, rating), chosen options, or free text (sealed: it may hold PII)."""

    __tablename__ = "survey_answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(
        sa.ForeignKey("survey_response.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[int] = mapped_column(sa.ForeignKey("survey_question.id"), index=True)
    number: Mapped[int | None]
    choices: Mapped[str | None] = mapped_column(sa.Text)  # JSON list of the chosen options
    text: Mapped[str | None] = mapped_column(EncryptedText("survey_answer.text"))

    response: Mapped[SurveyResponse] = relationship(back_populates="answers")

    def __str__(self) -> str:
        return f"answer #{self.id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invitation(
    survey: Survey,
    customer_id: int | None,
    days_valid: int = 14,
    ticket_id: int | None = None,
    purchase_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Invitation, str]:
    """A new invitation and its token (shown once, never stored); the caller commits."""
    now = now or utcnow()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = Invitation(
        survey_id=survey.id,
        customer_id=customer_id,
        token_hash=hash_token(token),
        expires_at=now + timedelta(days=days_valid),
        status="created",
        ticket_id=ticket_id,
        purchase_id=purchase_id,
        created_at=now,
    )
    db.session.add(invitation)
    return invitation, token


def open_invitation(token: str, now: datetime | None = None) -> Invitation | None:
    """The invitation of a token, marked opened; None if unknown, InvitationGone if used or expired."""
    now = now or utcnow()
    begin_write()  # it may mark the invitation opened or expired: read and write under one lock
    invitation = db.session.scalar(sa.select(Invitation).where(Invitation.token_hash == hash_token(token)))
    if invitation is None:
        db.session.rollback()
        return None
    if invitation.status == "responded":
        db.session.rollback()
        raise InvitationGone(str(_l("This survey link has been used already.")))
    if invitation.expires_at <= now or not invitation.survey.is_open(now):
        if invitation.status != "expired":
            invitation.status = "expired"
            db.session.commit()
        raise InvitationGone(str(_l("This survey link has expired.")))
    if invitation.status in ("created", "sent"):
        invitation.status, invitation.opened_at = "opened", now
    db.session.commit()
    return invitation


def _check_answer(question: Question, raw) -> dict | None:
    """A validated answer as column values, None when blank; raises ValueError when malformed."""
    if raw in (None, "", []):
        if question.required:
            raise ValueError(str(_l("Please answer this question.")))
        return None
    if question.kind in ("nps", "rating"):
        low, high = (0, 10) if question.kind == "nps" else (1, 5)
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(str(_l("Choose a value from %(low)d to %(high)d.", low=low, high=high)))
        return {"number": value}
    if question.kind in ("single", "multiple"):
        picked = [raw] if isinstance(raw, str) else list(raw)
        if any(p not in question.choices for p in picked) or (question.kind == "single" and len(picked) != 1):
            raise ValueError(str(_l("Choose from the options given.")))
        return {"choices": json.dumps(picked, ensure_ascii=False)}
    text = str(raw).strip()[:5000]
    if not text and question.required:
        raise ValueError(str(_l("Please answer this question.")))
    return {"text": text} if text else None


def is_detractor(question: Question, number: int | None) -> bool:
    """Whether an answer calls for a follow-up (NPS at or under 6, or CSAT 1–2)."""
    if number is None:
        return False
    return (question.kind == "nps" and number <= DETRACTOR_NPS) or (
        question.kind == "rating" and number <= DETRACTOR_CSAT
    )


def submit_response(
    survey: Survey,
    raw_answers: dict[int, object],
    invitation: Invitation | None = None,
    now: datetime | None = None,
) -> SurveyResponse:
    """Store a response in one transaction (committed); a detractor opens a follow-up ticket.

    Raises AnswersInvalid (nothing stored) or InvitationGone (the invitation was answered,
    even by a request at the same moment: the database allows one response per invitation).
    """
    now = now or utcnow()
    begin_write()  # on SQLite a reader that later writes can fail outright; take the lock first
    if invitation is not None and invitation.status == "responded":
        db.session.rollback()
        raise InvitationGone(str(_l("This survey link has been used already.")))
    errors, values = {}, {}
    for question in survey.questions:
        try:
            values[question.id] = _check_answer(question, raw_answers.get(question.id))
        except (ValueError, TypeError) as exc:
            errors[question.id] = str(exc) if str(exc) else str(_l("Please check this answer."))
    if errors:
        db.session.rollback()
        raise AnswersInvalid(errors)
    response = SurveyResponse(
        survey_id=survey.id,
        invitation_id=invitation.id if invitation else None,
        customer_id=invitation.customer_id if invitation else None,
        submitted_at=now,
    )
    for question in survey.questions:
        if values[question.id]:
            response.answers.append(Answer(question_id=question.id, **values[question.id]))
    db.session.add(response)
    if invitation is not None:
        invitation.status, invitation.responded_at = "responded", now
    try:
        db.session.flush()
        _follow_up(survey, response, values, now)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise InvitationGone(str(_l("This survey link has been used already."))) from None
    return response


def _follow_up(survey: Survey, response: SurveyResponse, values: dict, now: datetime) -> None:
    """A detractor's answer opens a ticket linked to the response."""
    from models.ticket import NewTicket, category_by_code, open_ticket

    low = [q for q in survey.questions if is_detractor(q, (values.get(q.id) or {}).get("number"))]
    if not low:
        return
    scores = ", ".join(f"{q.kind.upper()} {values[q.id]['number']}" for q in low)
    ticket, _code = open_ticket(
        NewTicket(
            subject=f"Survey follow-up: {survey.title} ({scores})"[:200],
            channel="web",
            priority="high",
            category=category_by_code("complaint"),
            customer_id=response.customer_id,
            first_message=f"Low score in survey “{survey.title}”: {scores}.",
        ),
        now=now,
    )
    db.session.flush()
    response.follow_up_ticket_id = ticket.id
