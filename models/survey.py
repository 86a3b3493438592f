"""Surveys: questions, personal invitation links, responses, and the detractor follow-up ticket."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship

from models import UTCDateTime, begin_write, db, one_of, utcnow
from models.crypto import EncryptedText

QUESTION_KINDS = ("nps", "rating", "single", "multiple", "text")
INVITATION_STATUSES = ("created", "sent", "opened", "responded", "expired")
INVITATION_LABELS = {
    "created": _l("Created"),
    "sent": _l("Sent"),
    "opened": _l("Opened"),
    "responded": _l("Responded"),
    "expired": _l("Expired"),
}
TOKEN_BYTES = 24  # 192 random bits
DETRACTOR_NPS = 6  # an NPS answer at or under this opens a follow-up ticket
DETRACTOR_CSAT = 2  # so does a CSAT (1–5) answer at or under this
SCALES = {"nps": (0, 10), "rating": (1, 5)}  # the lowest and highest answer of each scale


def open_between(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> bool:
    """Whether `now` falls in a survey's window (either end may be open)."""
    return (opens_at is None or opens_at <= now) and (closes_at is None or now < closes_at)


class SurveyError(ValueError):
    """A survey operation the rules refuse."""


class InvitationGone(SurveyError):
    """The link was used or has expired (a friendly 410)."""


class Survey(db.Model):
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


class Question(db.Model):
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


class Invitation(db.Model):
    """A personal, single-use, expiring link; only a hash of its token is stored."""

    __tablename__ = "survey_invitation"
    __table_args__ = (one_of("status", INVITATION_STATUSES, "status"),)

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
    customer = relationship("Customer")

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
    # A random key the form carries: the same form sent twice is stored once.
    submission_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True)

    answers: Mapped[list[Answer]] = relationship(back_populates="response", cascade="all, delete-orphan")
    customer = relationship("Customer")

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


def response_for_follow_up(ticket_id: int) -> SurveyResponse | None:
    """The survey response that opened a follow-up ticket, if it was one."""
    query = sa.select(SurveyResponse).where(SurveyResponse.follow_up_ticket_id == ticket_id)
    return db.session.scalar(query)


def customer_invitations(customer_id: int, limit: int = 10) -> list[Invitation]:
    """A customer's newest invitations."""
    query = (
        sa.select(Invitation)
        .options(joinedload(Invitation.survey))
        .where(Invitation.customer_id == customer_id)
        .order_by(Invitation.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def has_activity(survey_id: int) -> bool:
    """Whether a survey has invitations or responses (then it is kept, not deleted)."""
    invited = sa.select(Invitation.id).where(Invitation.survey_id == survey_id).limit(1)
    answered = sa.select(SurveyResponse.id).where(SurveyResponse.survey_id == survey_id).limit(1)
    return db.session.scalar(invited) is not None or db.session.scalar(answered) is not None


def ensure_public_slug(survey: Survey) -> None:
    """A survey whose anonymous link is on gets a hard-to-guess slug if it has none."""
    if survey.public_link and not survey.public_slug:
        survey.public_slug = secrets.token_urlsafe(9)


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


MAX_INVITATIONS = 5000  # per request: the links are shown on one page


def invite_customers(
    survey: Survey,
    customer_ids: list[int],
    days_valid: int = 14,
    now: datetime | None = None,
    purchase_id: int | None = None,
) -> list[tuple[Invitation, str]]:
    """One invitation per customer (duplicates dropped), in one transaction; the caller commits.

    A purchase given as context applies to a single customer's invitation.
    """
    now = now or utcnow()
    if survey.closes_at is not None and survey.closes_at <= now:
        raise SurveyError(str(_l("This survey has closed; reopen it before inviting anyone.")))
    unique = list(dict.fromkeys(customer_ids))
    if not unique:
        raise SurveyError(str(_l("No customers to invite.")))
    if len(unique) > MAX_INVITATIONS:
        raise SurveyError(str(_l("Invite at most %(n)d customers at a time.", n=MAX_INVITATIONS)))
    if purchase_id is not None and len(unique) != 1:
        raise SurveyError(str(_l("A purchase can be the context of one customer's invitation only.")))
    return [create_invitation(survey, cid, days_valid, purchase_id=purchase_id, now=now) for cid in unique]


def segment_query(
    tag: str | None = None, city: str | None = None, language: str | None = None, tier: str | None = None
) -> sa.Select:
    """Customer ids matching every criterion given (a tag, a city, a language, a tier)."""
    from models.customer import Customer
    from models.loyalty import BASE_TIER, LoyaltyAccount

    query = sa.select(Customer.id).order_by(Customer.id)
    if tag:
        tags = sa.literal(",") + Customer.tags + sa.literal(",")
        query = query.where(tags.contains(f",{tag.strip()},", autoescape=True))
    if city:
        query = query.where(Customer.city == city.strip())
    if language:
        query = query.where(Customer.language == language)
    if tier:
        member = sa.select(LoyaltyAccount.customer_id).where(LoyaltyAccount.tier_code == tier)
        if tier == BASE_TIER:  # customers without an account are in the base tier too
            has_account = sa.select(LoyaltyAccount.customer_id)
            query = query.where(sa.or_(Customer.id.in_(member), Customer.id.notone_of(has_account)))
        else:
            query = query.where(Customer.id.in_(member))
    return query


def find_invitation(token: str) -> Invitation | None:
    """The invitation of a token, changing nothing; None if unknown."""
    if not token or len(token) > 100:
        return None
    return db.session.scalar(sa.select(Invitation).where(Invitation.token_hash == hash_token(token)))


def _check_usable(invitation: Invitation, now: datetime) -> None:
    """Raise InvitationGone if the invitation was answered or has expired."""
    if invitation.status == "responded":
        raise InvitationGone(str(_l("This survey link has been used already.")))
    if invitation.expires_at <= now or not invitation.survey.is_open(now):
        raise InvitationGone(str(_l("This survey link has expired.")))


def open_invitation(token: str, now: datetime | None = None) -> Invitation | None:
    """The invitation of a token, marked opened; None if unknown, InvitationGone if used or expired."""
    now = now or utcnow()
    begin_write()  # it may mark the invitation opened or expired: read and write under one lock
    invitation = find_invitation(token)
    if invitation is None:
        db.session.rollback()
        return None
    try:
        _check_usable(invitation, now)
    except InvitationGone:
        if invitation.status not in ("responded", "expired"):
            invitation.status = "expired"
            db.session.commit()
        else:
            db.session.rollback()
        raise
    if invitation.status in ("created", "sent"):
        invitation.status, invitation.opened_at = "opened", now
    db.session.commit()
    return invitation


def expire_invitations(now: datetime | None = None) -> int:
    """Mark unanswered invitations past their expiry as expired; how many changed (caller commits)."""
    now = now or utcnow()
    result = db.session.execute(
        sa.update(Invitation)
        .where(Invitation.status.in_(("created", "sent", "opened")), Invitation.expires_at <= now)
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def purchase_for(customer_id: int, order_ref: str) -> int | None:
    """The id of a customer's purchase with this order reference (any source), if there is one."""
    from models.loyalty import Purchase

    query = sa.select(Purchase.id).where(
        Purchase.customer_id == customer_id, Purchase.order_ref == order_ref.strip()
    )
    return db.session.scalars(query.order_by(Purchase.id.desc())).first()


def mark_sent(invitations: list[Invitation]) -> int:
    """Record that links were handed to their customers (by hand, until email delivery exists)."""
    changed = 0
    for invitation in invitations:
        if invitation.status == "created":
            invitation.status = "sent"
            changed += 1
    return changed


def resolution_survey(now: datetime | None = None) -> Survey | None:
    """The survey sent when a ticket is resolved: the newest open one marked for it."""
    now = now or utcnow()
    candidates = db.session.scalars(
        sa.select(Survey).where(Survey.send_on_resolution.is_(True)).order_by(Survey.id.desc())
    )
    return next((s for s in candidates if s.is_open(now)), None)


def invite_after_resolution(ticket, now: datetime | None = None) -> str | None:
    """Invite a resolved ticket's customer to the satisfaction survey; the token, or None.

    Nothing is sent for a ticket without a known customer, when no survey is marked for
    resolutions, or when the ticket already has an invitation still waiting or answered
    (a reopened and re-resolved ticket is not asked twice). The caller commits.
    """
    now = now or utcnow()
    survey = resolution_survey(now)
    if survey is None or ticket.customer_id is None:
        return None
    asked = db.session.scalar(
        sa.select(sa.func.count(Invitation.id)).where(
            Invitation.ticket_id == ticket.id,
            sa.or_(
                Invitation.status == "responded",
                sa.and_(Invitation.status != "expired", Invitation.expires_at > now),
            ),
        )
    )
    if asked:
        return None
    _invitation, token = create_invitation(
        survey, ticket.customer_id, days_valid=7, ticket_id=ticket.id, now=now
    )
    return token


def move_ticket(ticket, to_status: str, actor=None, now: datetime | None = None) -> str | None:
    """Move a ticket along the workflow; a resolved ticket's customer is invited to say how it went.

    Returns the invitation's token (shown once) when one was made. The caller commits.
    """
    from models.ticket import transition

    transition(ticket, to_status, actor, now)
    return invite_after_resolution(ticket, now) if to_status == "resolved" else None
