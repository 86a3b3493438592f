"""Taking answers: responses, a survey as plain data (cached per process), answer checks, the write path.

This is the path every customer's submission takes, so it is kept lean: the answers are
checked in Python before any statement, the write is a handful of Core statements in the
caller's unit of work, and the survey's questions are read at most once per
SURVEY_SETTINGS_TTL seconds per worker. What other aggregates do about an answer (a
detractor's follow-up ticket, the rating kept on a ticket) they do in handlers of the
events raised here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from models import Model, UTCDateTime, db, utcnow
from models.crypto import EncryptedText
from models.events import DetractorAnswered, TicketRated
from models.surveys.builder import Question, Survey, SurveyError, open_between
from models.surveys.invitations import Invitation, InvitationGone
from models.surveys.scales import DETRACTOR_NPS, SCALES, needs_follow_up
from models.uow import UnitOfWork, current_uow


class SurveyResponse(Model):
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


class Answer(Model):
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


class AnswersInvalid(SurveyError):
    """Some answers are missing or malformed: `errors` maps question id → message."""

    def __init__(self, errors: dict[int, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class QuestionSpec:
    id: int
    position: int
    kind: str
    prompt: str
    required: bool
    choices: tuple[str, ...]

    @property
    def scale(self) -> range:
        """The answers an NPS or rating question takes (empty for other kinds)."""
        low, high = SCALES.get(self.kind, (0, -1))
        return range(low, high + 1)


@dataclass(frozen=True)
class SurveySpec:
    """What answering a survey needs, detached from any database session."""

    id: int
    title: str
    intro: str
    thank_you: str
    language: str
    opens_at: datetime | None
    closes_at: datetime | None
    public_link: bool
    detractor_nps: int
    questions: tuple[QuestionSpec, ...]
    read_at: float = 0.0

    @classmethod
    def of(cls, survey: Survey) -> SurveySpec:
        questions = tuple(
            QuestionSpec(q.id, q.position, q.kind, q.prompt, q.required, tuple(q.choices))
            for q in survey.questions
        )
        return cls(
            survey.id,
            survey.title,
            survey.intro or "",
            survey.thank_you or "",
            survey.language,
            survey.opens_at,
            survey.closes_at,
            bool(survey.public_link),
            survey.detractor_nps if survey.detractor_nps is not None else DETRACTOR_NPS,
            questions,
            time.monotonic(),
        )

    def is_open(self, now: datetime) -> bool:
        return open_between(self.opens_at, self.closes_at, now)


SPEC_CACHE = "patron.survey_specs"


def survey_spec(survey_id: int | None = None, slug: str | None = None) -> SurveySpec | None:
    """A survey by id or public slug, re-read at most every SURVEY_SETTINGS_TTL seconds.

    A change saved in this process applies at once (the cache is dropped on flush); other
    workers see it within the TTL.
    """
    cache = current_app.extensions.setdefault(SPEC_CACHE, {})
    ttl = float(current_app.config.get("SURVEY_SETTINGS_TTL", 5))
    hit = cache.get(("id", survey_id) if survey_id is not None else ("slug", slug))
    if hit is not None and time.monotonic() - hit.read_at < ttl:
        return hit
    which = Survey.id == survey_id if survey_id is not None else Survey.public_slug == slug
    query = sa.select(Survey).options(selectinload(Survey.questions)).where(which)
    survey = db.session.scalar(query)
    if survey is None:
        return None
    spec = SurveySpec.of(survey)
    cache[("id", spec.id)] = spec
    if survey.public_slug:
        cache[("slug", survey.public_slug)] = spec
    return spec


@sa.event.listens_for(Session, "after_flush")
def _forget_specs(session: Session, _context) -> None:
    """Edits to a survey apply to the very next answer page in this process."""
    changed = list(session.new) + list(session.dirty) + list(session.deleted)
    if any(isinstance(obj, (Survey, Question)) for obj in changed) and has_app_context():
        current_app.extensions.pop(SPEC_CACHE, None)


@dataclass(frozen=True)
class StoredResponse:
    id: int
    repeated: bool = False  # the same form had been stored before


def check_answer(question: QuestionSpec, raw) -> dict | None:
    """A validated answer as column values, None when blank; raises ValueError when malformed."""
    if raw in (None, "", []):
        if question.required:
            raise ValueError(str(_l("Please answer this question.")))
        return None
    if question.kind in ("nps", "rating"):
        low, high = SCALES[question.kind]
        value = int(raw) if str(raw).strip().lstrip("-").isdigit() else None
        if value is None or not low <= value <= high:
            raise ValueError(str(_l("Choose a value from %(low)d to %(high)d.", low=low, high=high)))
        return {"number": value}
    if question.kind in ("single", "multiple"):
        picked = [raw] if isinstance(raw, str) else list(raw)
        if any(p not in question.choices for p in picked) or (question.kind == "single" and len(picked) != 1):
            raise ValueError(str(_l("Choose from the options given.")))
        return {"choices": json.dumps(list(dict.fromkeys(picked)), ensure_ascii=False)}
    text = str(raw).strip()[:5000]
    if not text and question.required:
        raise ValueError(str(_l("Please answer this question.")))
    return {"text": text} if text else None


def check_answers(survey: SurveySpec, raw_answers: dict[int, object]) -> dict[int, dict]:
    """Every question's checked answer (blank ones left out), or AnswersInvalid with all the errors."""
    errors, values = {}, {}
    for question in survey.questions:
        try:
            value = check_answer(question, raw_answers.get(question.id))
        except (ValueError, TypeError) as exc:
            errors[question.id] = str(exc) or str(_l("Please check this answer."))
        else:
            if value:
                values[question.id] = value
    if errors:
        raise AnswersInvalid(errors)
    return values


def _numbers(survey: SurveySpec, values: dict, kinds: tuple[str, ...]) -> list[tuple[QuestionSpec, int]]:
    return [
        (q, values[q.id]["number"])
        for q in survey.questions
        if q.kind in kinds and "number" in values.get(q.id, {})
    ]


def submit_response(
    survey: Survey | SurveySpec,
    raw_answers: dict[int, object],
    invitation: Invitation | int | None = None,
    now: datetime | None = None,
    submission_key: str | None = None,
) -> StoredResponse:
    """Store a response in the open unit of work; a detractor's answer and a ticket's rating raise events.

    `invitation` is the invitation (or its id) the answers came through, None for the
    anonymous link. The same form sent again (same `submission_key`) returns the response
    stored the first time. Raises AnswersInvalid (nothing stored), SurveyError (the survey is
    not taking answers this way) or InvitationGone (the invitation was answered, even by a
    request at the same moment, or has expired). Both guards are the database's: a
    conditional UPDATE claims the invitation, and unique constraints hold one response per
    invitation and key.
    """
    now = now or utcnow()
    uow = current_uow()
    spec = survey if isinstance(survey, SurveySpec) else SurveySpec.of(survey)
    values = check_answers(spec, raw_answers)
    invitation_id = invitation.id if isinstance(invitation, Invitation) else invitation
    if not spec.is_open(now) or (invitation_id is None and not spec.public_link):
        if invitation_id is not None:
            raise InvitationGone(str(_l("This survey link has expired.")))
        raise SurveyError(str(_l("This survey is not taking answers.")))
    customer_id = ticket_id = None
    if invitation_id is not None:
        claimed = _claim(invitation_id, now)
        if claimed is None:
            return _repeated_or_gone(invitation_id, submission_key)
        customer_id, ticket_id = claimed
    response_id = _insert_response(spec.id, invitation_id, customer_id, now, submission_key)
    if response_id is None:
        earlier = None if invitation_id is not None else _stored_with_key(submission_key)
        if earlier is None:  # a claimed invitation with a response already: undo the claim
            raise InvitationGone(str(_l("This survey link has been used already.")))
        return earlier  # the same anonymous form, stored by a request a moment earlier
    if values:
        blank = {"response_id": response_id, "number": None, "choices": None, "text": None}
        rows = [blank | {"question_id": qid} | value for qid, value in values.items()]
        db.session.execute(sa.insert(Answer.__table__), rows)
    _raise_events(uow, spec, values, response_id, customer_id, ticket_id, now)
    return StoredResponse(response_id)


def _claim(invitation_id: int, now: datetime) -> tuple[int | None, int | None] | None:
    """Mark the invitation answered, if it still may be: the one guard every request passes.

    Returns its customer and ticket, read from the row the claim locked; None if not claimed.
    """
    table = Invitation.__table__
    claimed = db.session.execute(
        sa.update(table)
        .where(table.c.id == invitation_id, table.c.status != "responded", table.c.expires_at > now)
        .values(status="responded", responded_at=now)
        .returning(table.c.customer_id, table.c.ticket_id)
    ).first()
    return None if claimed is None else (claimed.customer_id, claimed.ticket_id)


def _insert_response(
    survey_id: int, invitation_id: int | None, customer_id: int | None, now: datetime, key: str | None
) -> int | None:
    """Insert the response row; None when a unique key (the form's, the invitation's) was taken.

    ON CONFLICT DO NOTHING instead of catching IntegrityError: the caller's transaction must
    go on (a repeated form commits nothing), and a savepoint would cost two more statements.
    """
    table = SurveyResponse.__table__
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing().returning(table.c.id)
    row = db.session.execute(
        statement,
        {
            "survey_id": survey_id,
            "invitation_id": invitation_id,
            "customer_id": customer_id,
            "submitted_at": now,
            "follow_up_ticket_id": None,
            "submission_key": key,
        },
    ).first()
    return None if row is None else row.id


def _repeated_or_gone(invitation_id: int, submission_key: str | None) -> StoredResponse:
    earlier = _stored_with_key(submission_key)
    if earlier is not None:
        return earlier
    status = db.session.scalar(sa.select(Invitation.status).where(Invitation.id == invitation_id))
    if status == "responded":
        raise InvitationGone(str(_l("This survey link has been used already.")))
    raise InvitationGone(str(_l("This survey link has expired.")))


def _stored_with_key(key: str | None) -> StoredResponse | None:
    if not key:
        return None
    found = db.session.scalar(sa.select(SurveyResponse.id).where(SurveyResponse.submission_key == key))
    return StoredResponse(found, repeated=True) if found is not None else None


def _raise_events(
    uow: UnitOfWork,
    survey: SurveySpec,
    values: dict,
    response_id: int,
    customer_id: int | None,
    ticket_id: int | None,
    now: datetime,
) -> None:
    """A detractor's answer asks for a follow-up; the first rating of a ticket's survey rates the ticket."""
    low = [
        (q, n)
        for q, n in _numbers(survey, values, ("nps", "rating"))
        if needs_follow_up(q.kind, n, survey.detractor_nps)
    ]
    if low:
        comments = [
            f"{q.prompt}\n{values[q.id]['text']}" for q in survey.questions if "text" in values.get(q.id, {})
        ]
        uow.emit(
            DetractorAnswered(
                response_id=response_id,
                survey_id=survey.id,
                survey_title=survey.title,
                customer_id=customer_id,
                language=survey.language,
                scores=", ".join(f"{'NPS' if q.kind == 'nps' else 'CSAT'} {n}" for q, n in low),
                comment="\n\n".join(comments),
                at=now,
            )
        )
    ratings = _numbers(survey, values, ("rating",))
    if ticket_id is not None and ratings:
        uow.emit(TicketRated(ticket_id=ticket_id, score=ratings[0][1], at=now))


def link_follow_up(response_id: int, ticket_id: int) -> None:
    """Record on a response the follow-up ticket its answer opened."""
    responses = SurveyResponse.__table__  # Core, not the ORM's bulk update: the answer path is hot
    current_uow().session.execute(
        sa.update(responses).where(responses.c.id == response_id).values(follow_up_ticket_id=ticket_id)
    )


def response_for_follow_up(ticket_id: int) -> SurveyResponse | None:
    """The survey response that opened a follow-up ticket, if it was one."""
    query = sa.select(SurveyResponse).where(SurveyResponse.follow_up_ticket_id == ticket_id)
    return db.session.scalar(query)
