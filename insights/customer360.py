"""The customer 360: one customer's figures and one timeline of everything that happened to them.

Set-based reads taking a Session, no Flask. The timeline is one UNION ALL over purchases,
refunds, points entries, coupons, tickets, ticket messages, survey invitations and survey
answers, newest first, paged by OFFSET (a customer has hundreds of rows, not millions).
Rows carry codes (statuses, kinds), never labels: the door puts them into words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.loyalty.ledger import LoyaltyAccount, PointsEntry, expiring_points
from models.loyalty.programme import BASE_TIER
from models.loyalty.purchases import Purchase
from models.loyalty.rewards import Redemption, Reward
from models.surveys.answers import Answer, SurveyResponse
from models.surveys.builder import Question, Survey
from models.surveys.invitations import Invitation, status_now_expression
from models.tickets.ticket import OPEN_STATUSES, Ticket, TicketMessage

TIMELINE_PAGE_SIZE = 25
EXCERPT_LENGTH = 80
# The kinds of timeline row, in the order they sort when two happened at the same moment.
TIMELINE_KINDS = (
    "purchase",
    "refund",
    "points",
    "coupon",
    "ticket",
    "message",
    "note",
    "invitation",
    "answer",
)


@dataclass(frozen=True)
class OpenTicket:
    id: int
    reference: str | None
    subject: str
    status: str


@dataclass(frozen=True)
class CustomerSummary:
    """The figures at the top of a customer's page."""

    tier_code: str
    balance: int
    expiring_points: int | None  # the next lot to lapse, and when
    expiring_at: datetime | None
    lifetime_spend: Decimal  # completed purchases; refunded ones are not spend
    purchases: int
    last_purchase_at: datetime | None
    open_tickets: list[OpenTicket]
    open_ticket_count: int
    latest_nps: int | None
    latest_nps_at: datetime | None
    latest_csat: int | None
    latest_csat_at: datetime | None
    tags: list[str]


@dataclass(frozen=True)
class TimelineRow:
    """One thing that happened: when, what kind, its title and detail code, and what it links to.

    `detail` is a code (a status, a ledger kind, a message kind, a channel); `number` and
    `number2` carry the kind's figures (points and balance after; NPS and CSAT; points spent),
    `amount` a purchase's amount. `target_id` is the id of the page the row links to: the ticket
    (tickets and messages), the coupon (coupons), the survey (invitations, answers).
    """

    at: datetime
    kind: str
    item_id: int
    title: str
    detail: str | None
    target_id: int | None
    amount: Decimal | None = None
    number: int | None = None
    number2: int | None = None
    extra: str | None = None


@dataclass(frozen=True)
class TimelinePage:
    rows: list[TimelineRow]
    page: int
    has_next: bool


def customer_summary(
    session: Session, customer_id: int, tags: str = "", open_limit: int = 5
) -> CustomerSummary:
    """The figures of one customer: tier, balance, next expiry, spend, tickets, latest NPS and CSAT."""
    account = session.execute(
        sa.select(LoyaltyAccount.balance, LoyaltyAccount.tier_code).where(
            LoyaltyAccount.customer_id == customer_id
        )
    ).first()
    spend = session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(Purchase.amount), 0),
            sa.func.count(),
            sa.func.max(Purchase.purchased_at),
        ).where(Purchase.customer_id == customer_id, Purchase.status == "completed")
    ).one()
    open_clause = sa.and_(Ticket.customer_id == customer_id, Ticket.status.in_(OPEN_STATUSES))
    open_count = session.scalar(sa.select(sa.func.count(Ticket.id)).where(open_clause)) or 0
    open_rows = session.execute(
        sa.select(Ticket.id, Ticket.reference, Ticket.subject, Ticket.status)
        .where(open_clause)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(open_limit)
    ).all()
    nps, nps_at = _latest_score(session, customer_id, "nps")
    csat, csat_at = _latest_score(session, customer_id, "rating")
    # First in, first out, as the ledger reckons it (one rule, in models/loyalty/ledger.py).
    lots = expiring_points(customer_id)
    return CustomerSummary(
        tier_code=account.tier_code if account else BASE_TIER,
        balance=account.balance if account else 0,
        expiring_points=lots[0].points if lots else None,
        expiring_at=lots[0].expires_at if lots else None,
        lifetime_spend=Decimal(spend[0]).quantize(Decimal("0.01")),
        purchases=spend[1],
        last_purchase_at=spend[2],
        open_tickets=[OpenTicket(*row) for row in open_rows],
        open_ticket_count=open_count,
        latest_nps=nps,
        latest_nps_at=nps_at,
        latest_csat=csat,
        latest_csat_at=csat_at,
        tags=[tag for tag in (tags or "").split(",") if tag],
    )


def _latest_score(session: Session, customer_id: int, kind: str) -> tuple[int | None, datetime | None]:
    """The customer's newest answer to a question of this kind (nps, rating), and when."""
    row = session.execute(
        sa.select(Answer.number, SurveyResponse.submitted_at)
        .join(SurveyResponse, Answer.response_id == SurveyResponse.id)
        .join(Question, Answer.question_id == Question.id)
        .where(SurveyResponse.customer_id == customer_id, Question.kind == kind, Answer.number.is_not(None))
        .order_by(SurveyResponse.submitted_at.desc(), SurveyResponse.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def _typed_null(kind: sa.types.TypeEngine) -> sa.ColumnElement:
    # PostgreSQL types the columns of a UNION from its first SELECT: every NULL needs its type.
    return sa.cast(sa.null(), kind)


def _row(
    at,
    kind: str,
    item_id,
    title,
    detail=None,
    target_id=None,
    amount=None,
    number=None,
    number2=None,
    extra=None,
) -> list[sa.ColumnElement]:
    """The columns of one SELECT of the timeline's UNION, in its order and types."""

    def typed(value, kind_):
        return _typed_null(kind_) if value is None else sa.cast(value, kind_)

    return [
        at.label("at"),
        sa.literal(kind, sa.String()).label("kind"),
        item_id.label("item_id"),
        typed(title, sa.String()).label("title"),
        typed(detail, sa.String()).label("detail"),
        typed(target_id, sa.Integer).label("target_id"),
        typed(amount, sa.Numeric(12, 2)).label("amount"),
        typed(number, sa.Integer).label("number"),
        typed(number2, sa.Integer).label("number2"),
        typed(extra, sa.String()).label("extra"),
    ]


def _score(kind: str) -> sa.ScalarSelect:
    """A response's answer to its first question of one kind (nps, rating), as a scalar subquery."""
    return (
        sa.select(sa.func.max(Answer.number))
        .join(Question, Answer.question_id == Question.id)
        .where(Answer.response_id == SurveyResponse.id, Question.kind == kind)
        .scalar_subquery()
    )


def timeline_query(customer_id: int, now: datetime) -> sa.Subquery:
    """Everything that happened to one customer, as one UNION ALL (unordered)."""
    purchases = sa.select(
        *_row(
            Purchase.purchased_at,
            "purchase",
            Purchase.id,
            Purchase.order_ref,
            Purchase.channel,
            amount=Purchase.amount,
            number=Purchase.points,
            extra=Purchase.currency,
        )
    ).where(Purchase.customer_id == customer_id)
    refunds = sa.select(
        *_row(
            Purchase.refunded_at,
            "refund",
            Purchase.id,
            Purchase.order_ref,
            Purchase.channel,
            amount=Purchase.amount,
            number=Purchase.points,
            extra=Purchase.currency,
        )
    ).where(Purchase.customer_id == customer_id, Purchase.refunded_at.is_not(None))
    points = sa.select(
        *_row(
            PointsEntry.created_at,
            "points",
            PointsEntry.id,
            PointsEntry.reason,
            PointsEntry.kind,
            number=PointsEntry.points,
            number2=PointsEntry.balance_after,
        )
    ).where(PointsEntry.customer_id == customer_id)
    coupons = (
        sa.select(
            *_row(
                Redemption.created_at,
                "coupon",
                Redemption.id,
                Reward.name_en,
                Redemption.status,
                target_id=Redemption.id,
                number=Redemption.points,
                extra=Reward.name_zh,
            )
        )
        .join(Reward, Redemption.reward_id == Reward.id)
        .where(Redemption.customer_id == customer_id)
    )
    tickets = sa.select(
        *_row(
            Ticket.created_at,
            "ticket",
            Ticket.id,
            Ticket.subject,
            Ticket.status,
            target_id=Ticket.id,
            extra=Ticket.reference,
        )
    ).where(Ticket.customer_id == customer_id)
    messages = (
        sa.select(
            *_row(
                TicketMessage.created_at,
                "message",
                TicketMessage.id,
                Ticket.subject,
                TicketMessage.kind,
                target_id=Ticket.id,
                extra=Ticket.reference,
            )
        )
        .join(Ticket, TicketMessage.ticket_id == Ticket.id)
        .where(Ticket.customer_id == customer_id, TicketMessage.kind != "note")
    )
    notes = (
        sa.select(
            *_row(
                TicketMessage.created_at,
                "note",
                TicketMessage.id,
                Ticket.subject,
                TicketMessage.kind,
                target_id=Ticket.id,
                extra=Ticket.reference,
            )
        )
        .join(Ticket, TicketMessage.ticket_id == Ticket.id)
        .where(Ticket.customer_id == customer_id, TicketMessage.kind == "note")
    )
    invitations = (
        sa.select(
            *_row(
                Invitation.created_at,
                "invitation",
                Invitation.id,
                Survey.title,
                status_now_expression(now),
                target_id=Survey.id,
            )
        )
        .join(Survey, Invitation.survey_id == Survey.id)
        .where(Invitation.customer_id == customer_id)
    )
    answers = (
        sa.select(
            *_row(
                SurveyResponse.submitted_at,
                "answer",
                SurveyResponse.id,
                Survey.title,
                target_id=Survey.id,
                number=_score("nps"),
                number2=_score("rating"),
            )
        )
        .join(Survey, SurveyResponse.survey_id == Survey.id)
        .where(SurveyResponse.customer_id == customer_id)
    )
    parts = (purchases, refunds, points, coupons, tickets, messages, notes, invitations, answers)
    return sa.union_all(*parts).subquery("timeline")


def customer_timeline(
    session: Session, customer_id: int, now: datetime, page: int = 1, page_size: int = TIMELINE_PAGE_SIZE
) -> TimelinePage:
    """One page of the customer's timeline, newest first (ties: kind, then newest row first)."""
    page = max(page, 1)
    timeline = timeline_query(customer_id, now)
    kind_order = sa.case({kind: n for n, kind in enumerate(TIMELINE_KINDS)}, value=timeline.c.kind)
    query = (
        sa.select(timeline)
        .order_by(timeline.c.at.desc(), kind_order, timeline.c.item_id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size + 1)  # one more: is there a next page?
    )
    rows = [TimelineRow(**row._mapping) for row in session.execute(query)]
    return TimelinePage(rows[:page_size], page, len(rows) > page_size)


def message_excerpts(
    session: Session, message_ids: list[int], length: int = EXCERPT_LENGTH
) -> dict[int, str]:
    """The start of each message's body (decrypted), by message id: only for viewers with PII rights."""
    if not message_ids:
        return {}
    rows = session.execute(
        sa.select(TicketMessage.id, TicketMessage.body).where(TicketMessage.id.in_(message_ids))
    )
    return {message_id: _excerpt(body or "", length) for message_id, body in rows}


def _excerpt(text: str, length: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "…"
