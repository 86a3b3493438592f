"""Taking answers: a survey as plain data (cached per process), answer checks, storing a response.

This is the path every customer's submission takes, so it is kept lean: the answers are
checked before any lock is taken, the write transaction is a handful of Core statements, and
the survey's questions are read at most once per SURVEY_SETTINGS_TTL seconds per worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from models import begin_write, db, utcnow
from models.survey import (
    DETRACTOR_CSAT,
    DETRACTOR_NPS,
    SCALES,
    Answer,
    Invitation,
    InvitationGone,
    Question,
    Survey,
    SurveyError,
    SurveyResponse,
    open_between,
)


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
    follow_up_ticket_id: int | None
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


def is_detractor(question, number: int | None, threshold: int = DETRACTOR_NPS) -> bool:
    """Whether an answer calls for a follow-up (NPS at or under the threshold, or CSAT 1–2)."""
    if number is None:
        return False
    return (question.kind == "nps" and number <= threshold) or (
        question.kind == "rating" and number <= DETRACTOR_CSAT
    )


def _numbers(survey: SurveySpec, values: dict, kinds: tuple[str, ...]) -> list[tuple[QuestionSpec, int]]:
    return [
        (q, values[q.id]["number"])
        for q in survey.questions
        if q.kind in kinds and "number" in values.get(q.id, {})
    ]


def submit_response(
    survey: Survey | SurveySpec,
    raw_answers: dict[int, object],
    invitation: Invitation | None = None,
    now: datetime | None = None,
    submission_key: str | None = None,
) -> StoredResponse:
    """Store a response in one transaction (committed); a detractor opens a follow-up ticket.

    The same form sent again (same `submission_key`) returns the response stored the first
    time. Raises AnswersInvalid (nothing stored), SurveyError (the survey is not taking
    answers this way) or InvitationGone (the invitation was answered, even by a request at
    the same moment, or has expired). Both guards are the database's: a conditional UPDATE
    claims the invitation, and unique constraints hold one response per invitation and key.
    """
    now = now or utcnow()
    spec = survey if isinstance(survey, SurveySpec) else SurveySpec.of(survey)
    values = check_answers(spec, raw_answers)
    if not spec.is_open(now) or (invitation is None and not spec.public_link):
        if invitation is not None:
            raise InvitationGone(str(_l("This survey link has expired.")))
        raise SurveyError(str(_l("This survey is not taking answers.")))
    invited = (invitation.id, invitation.customer_id, invitation.ticket_id) if invitation else None
    begin_write()  # on SQLite: BEGIN IMMEDIATE, writers queue here instead of failing later
    try:
        if invited and not _claim(invited[0], now):
            raise _gone_or_repeated(invited[0], submission_key)
        follow_up = _follow_up(spec, invited[1] if invited else None, values, now)
        response_id = db.session.execute(
            sa.insert(SurveyResponse.__table__).returning(SurveyResponse.__table__.c.id),
            {
                "survey_id": spec.id,
                "invitation_id": invited[0] if invited else None,
                "customer_id": invited[1] if invited else None,
                "submitted_at": now,
                "follow_up_ticket_id": follow_up,
                "submission_key": submission_key,
            },
        ).scalar_one()
        if values:
            blank = {"response_id": response_id, "number": None, "choices": None, "text": None}
            rows = [blank | {"question_id": qid} | value for qid, value in values.items()]
            db.session.execute(sa.insert(Answer.__table__), rows)
        if invited and invited[2]:
            _score_ticket(spec, invited[2], values, now)
        db.session.commit()
    except _Repeated as repeated:
        db.session.rollback()
        return repeated.earlier
    except IntegrityError:
        db.session.rollback()
        earlier = _stored_with_key(submission_key)  # the same form, sent twice at once
        if earlier is not None:
            return earlier
        raise InvitationGone(str(_l("This survey link has been used already."))) from None
    except BaseException:
        db.session.rollback()
        raise
    return StoredResponse(response_id, follow_up)


class _Repeated(Exception):
    def __init__(self, earlier: StoredResponse):
        self.earlier = earlier


def _claim(invitation_id: int, now: datetime) -> bool:
    """Mark the invitation answered, if it still may be: the one guard every request passes."""
    claimed = db.session.execute(
        sa.update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.status != "responded", Invitation.expires_at > now)
        .values(status="responded", responded_at=now)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1


def _gone_or_repeated(invitation_id: int, submission_key: str | None) -> Exception:
    earlier = _stored_with_key(submission_key)
    if earlier is not None:
        return _Repeated(earlier)
    status = db.session.scalar(sa.select(Invitation.status).where(Invitation.id == invitation_id))
    if status == "responded":
        return InvitationGone(str(_l("This survey link has been used already.")))
    return InvitationGone(str(_l("This survey link has expired.")))


def _stored_with_key(key: str | None) -> StoredResponse | None:
    if not key:
        return None
    row = db.session.execute(
        sa.select(SurveyResponse.id, SurveyResponse.follow_up_ticket_id).where(
            SurveyResponse.submission_key == key
        )
    ).first()
    return StoredResponse(row.id, row.follow_up_ticket_id, repeated=True) if row else None


def _follow_up(survey: SurveySpec, customer_id: int | None, values: dict, now: datetime) -> int | None:
    """A detractor's answer opens a high-priority ticket; its id, or None."""
    from models.ticket import NewTicket, add_message, category_by_code, open_ticket

    low = [
        (q, n)
        for q, n in _numbers(survey, values, ("nps", "rating"))
        if is_detractor(q, n, survey.detractor_nps)
    ]
    if not low:
        return None
    scores = ", ".join(f"{'NPS' if q.kind == 'nps' else 'CSAT'} {n}" for q, n in low)
    comments = [
        f"{q.prompt}\n{values[q.id]['text']}" for q in survey.questions if "text" in values.get(q.id, {})
    ]
    with force_locale(survey.language):  # written for the team that reads this survey
        subject = _("Survey follow-up: %(title)s (%(scores)s)", title=survey.title, scores=scores)
        note = _("Low score in survey “%(title)s”: %(scores)s.", title=survey.title, scores=scores)
    ticket, _code = open_ticket(
        NewTicket(
            subject=subject[:200],
            channel="web",
            priority="high",
            category=category_by_code("complaint"),
            customer_id=customer_id,
        ),
        now=now,
    )
    add_message(ticket, "note", "\n\n".join([note, *comments]), now=now)
    db.session.flush()
    return ticket.id


def _score_ticket(survey: SurveySpec, ticket_id: int, values: dict, now: datetime) -> None:
    """The first rating answer of a ticket's satisfaction survey is stored on the ticket."""
    from models.ticket import Ticket

    ratings = _numbers(survey, values, ("rating",))
    if ratings:
        db.session.execute(
            sa.update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(csat_score=ratings[0][1], csat_at=now)
            .execution_options(synchronize_session=False)
        )
