"""Invitations: personal, single-use, expiring links (only a hash of each token is stored), segments."""

from __future__ import annotations

import hashlib
import secrets
import typing as t
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship

from models import Model, UTCDateTime, db, one_of, utcnow
from models.surveys.builder import Survey, SurveyError
from models.uow import current_uow

INVITATION_STATUSES = ("created", "sent", "opened", "responded", "expired")
INVITATION_LABELS = {
    "created": _l("Created"),
    "sent": _l("Sent"),
    "opened": _l("Opened"),
    "responded": _l("Responded"),
    "expired": _l("Expired"),
}
WAITING = ("created", "sent", "opened")  # statuses of an invitation that may still be answered
TOKEN_BYTES = 24  # 192 random bits
MAX_INVITATIONS = 5000  # per request: the links are shown on one page
RESOLUTION_DAYS_VALID = 7  # the satisfaction survey sent when a ticket is resolved


class InvitationGone(SurveyError):
    """The link was used or has expired (a friendly 410)."""


class Invitation(Model):
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
    # As last stored; past `expires_at` an unanswered invitation is expired whatever this says
    # (status_at), and the job expire_invitations catches the column up.
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

    def status_at(self, now: datetime | None = None) -> str:
        """Where the invitation stands at `now`: expired once past its expiry and never answered."""
        if self.status in WAITING and self.expires_at <= (now or utcnow()):
            return "expired"
        return self.status

    @property
    def unopened(self) -> bool:
        """Whether opening the link would mark it opened (it was created or sent, never opened)."""
        return self.status in ("created", "sent")


def expired_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Invitations expired at `now`: stored as expired, or waiting past their expiry."""
    return sa.or_(
        Invitation.status == "expired",
        sa.and_(Invitation.status.in_(WAITING), Invitation.expires_at <= now),
    )


def status_now_expression(now: datetime) -> sa.ColumnElement[str]:
    """Invitation.status_at(now) as SQL, for counting invitations by where they stand."""
    return sa.case((expired_clause(now), "expired"), else_=Invitation.status)


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
    """A new invitation in the open unit of work, and its token (shown once, never stored)."""
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
    current_uow().add(invitation)
    return invitation, token


def invite_customers(
    survey: Survey,
    customer_ids: list[int],
    days_valid: int = 14,
    now: datetime | None = None,
    purchase_id: int | None = None,
) -> list[tuple[Invitation, str]]:
    """One invitation per customer (duplicates dropped), audited, in the open unit of work.

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
    created = [create_invitation(survey, cid, days_valid, purchase_id=purchase_id, now=now) for cid in unique]
    current_uow().audit("survey.invite", "survey", survey.id, ["invitations"], detail=f"n={len(created)}")
    return created


def segment_query(
    tag: str | None = None, city: str | None = None, language: str | None = None, tier: str | None = None
) -> sa.Select:
    """Customer ids matching every criterion given (a tag, a city, a language, a tier)."""
    from models.customer import Customer
    from models.loyalty.ledger import LoyaltyAccount
    from models.loyalty.programme import BASE_TIER

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
            query = query.where(sa.or_(Customer.id.in_(member), Customer.id.not_in(has_account)))
        else:
            query = query.where(Customer.id.in_(member))
    return query


def segment_size(
    tag: str | None = None, city: str | None = None, language: str | None = None, tier: str | None = None
) -> int:
    """How many customers a segment holds now (read only)."""
    segment = segment_query(tag, city, language, tier).order_by(None).subquery()
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(segment)) or 0)


# A segment is invited in two steps: its size is shown with a signed token of the exact
# selection, and only a request carrying that token for the same selection and the same size
# creates invitations. A changed selection (or a segment that grew meanwhile) is shown again.
CONFIRM_SALT = "patron.survey-invite-confirm"
CONFIRM_MAX_AGE = 30 * 60


def _confirm_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRM_SALT)


def selection_token(selection: dict[str, t.Any], size: int) -> str:
    """A signed token saying "this selection, of this size, was shown"."""
    return _confirm_serializer().dumps({"selection": selection, "size": size})


def selection_confirmed(token: str | None, selection: dict[str, t.Any], size: int) -> bool:
    """Whether a token confirms exactly this selection at this size (and is recent)."""
    if not token or len(token) > 2000:
        return False
    try:
        shown = _confirm_serializer().loads(token, max_age=CONFIRM_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(shown, dict) and shown == {"selection": selection, "size": size}


def find_invitation(token: str) -> Invitation | None:
    """The invitation of a token, changing nothing; None if unknown."""
    if not token or len(token) > 100:
        return None
    return db.session.scalar(sa.select(Invitation).where(Invitation.token_hash == hash_token(token)))


def check_usable(invitation: Invitation, now: datetime | None = None) -> None:
    """Raise InvitationGone if the invitation was answered or has expired (or its survey closed)."""
    now = now or utcnow()
    if invitation.status == "responded":
        raise InvitationGone(str(_l("This survey link has been used already.")))
    if invitation.status_at(now) == "expired" or not invitation.survey.is_open(now):
        raise InvitationGone(str(_l("This survey link has expired.")))


def mark_opened(invitation_id: int, now: datetime | None = None) -> bool:
    """Record that a created or sent link was opened, in the open unit of work; whether it changed.

    A conditional UPDATE rather than read-then-write: two clicks at once mark it once.
    """
    now = now or utcnow()
    current_uow()  # a write: the door opens a unit of work only when `unopened` says one is needed
    opening = (
        sa.update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.status.in_(("created", "sent")),
            Invitation.expires_at > now,
        )
        .values(status="opened", opened_at=now)
    )
    return _rows_changed(opening) == 1


def open_invitation(token: str, now: datetime | None = None) -> Invitation | None:
    """A customer opens a link: None if unknown, InvitationGone if used or expired, else marked opened."""
    now = now or utcnow()
    invitation = find_invitation(token)
    if invitation is None:
        return None
    check_usable(invitation, now)
    if invitation.unopened:
        mark_opened(invitation.id, now)
    return invitation


def expire_invitations(now: datetime | None = None) -> int:
    """Store "expired" on unanswered invitations past their expiry, audited; how many changed.

    The scheduled job: it runs in the caller's unit of work and is safe to run twice at once.
    """
    now = now or utcnow()
    uow = current_uow()
    expired = _rows_changed(
        sa.update(Invitation)
        .where(Invitation.status.in_(WAITING), Invitation.expires_at <= now)
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    if expired:
        uow.audit("survey_invitation.expire", "survey_invitation", None, ["status"], detail=f"n={expired}")
    return expired


def _rows_changed(statement: sa.Update) -> int:
    """Run an UPDATE; how many rows it changed."""
    return t.cast("sa.CursorResult[t.Any]", db.session.execute(statement)).rowcount


def mark_sent(invitations: list[Invitation]) -> int:
    """Record that links were handed to their customers (by hand, until email delivery exists), audited."""
    uow = current_uow()
    changed = 0
    for invitation in invitations:
        if invitation.status == "created":
            invitation.status = "sent"
            changed += 1
    uow.audit("survey_invitation.sent", "survey_invitation", None, ["status"], detail=f"n={changed}")
    return changed


def purchase_for(customer_id: int, order_ref: str) -> int | None:
    """The id of a customer's purchase with this order reference (any source), if there is one."""
    from models.loyalty.purchases import Purchase

    query = sa.select(Purchase.id).where(
        Purchase.customer_id == customer_id, Purchase.order_ref == order_ref.strip()
    )
    return db.session.scalars(query.order_by(Purchase.id.desc())).first()


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


def resolution_survey(now: datetime | None = None) -> Survey | None:
    """The survey sent when a ticket is resolved: the newest open one marked for it."""
    now = now or utcnow()
    candidates = db.session.scalars(
        sa.select(Survey).where(Survey.send_on_resolution.is_(True)).order_by(Survey.id.desc())
    )
    return next((s for s in candidates if s.is_open(now)), None)


def invite_after_resolution(
    ticket_id: int, customer_id: int | None, now: datetime | None = None
) -> str | None:
    """Invite a resolved ticket's customer to the satisfaction survey, audited; the token, or None.

    Nothing is sent for a ticket without a known customer, when no survey is marked for
    resolutions, or when the ticket already has an invitation still waiting or answered
    (a reopened and re-resolved ticket is not asked twice).
    """
    now = now or utcnow()
    survey = resolution_survey(now)
    if survey is None or customer_id is None:
        return None
    asked = db.session.scalar(
        sa.select(sa.func.count(Invitation.id)).where(
            Invitation.ticket_id == ticket_id, sa.not_(expired_clause(now))
        )
    )
    if asked:
        return None
    _invitation, token = create_invitation(
        survey, customer_id, days_valid=RESOLUTION_DAYS_VALID, ticket_id=ticket_id, now=now
    )
    current_uow().audit(
        "survey.invite", "survey", survey.id, ["invitations"], detail=f"n=1 ticket={ticket_id}"
    )
    return token
