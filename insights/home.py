"""The figures on the staff home page: an agent's queue, and the team's service and loyalty figures.

Every function takes a Session and runs a fixed number of set-based queries (GROUP BY, CASE),
whatever the number of rows. Time buckets (weeks, months) are cut at midnight in the viewer's
zone: their boundaries are computed here, in Python, and handed to the database as UTC
timestamps inside one CASE, so the same SQL buckets alike on SQLite and PostgreSQL (neither
dialect's date functions know the staff member's zone, and SQLite's know none).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from insights.scores import csat, nps
from models.customer import Customer
from models.loyalty.ledger import PointsEntry
from models.loyalty.rewards import Redemption, Reward
from models.surveys.answers import Answer, SurveyResponse
from models.surveys.builder import Question
from models.tickets.ticket import (
    Ticket,
    breached_clause,
    mine_clause,
    open_clause,
    overdue_clause,
    unassigned_clause,
)

SLA_WINDOW = timedelta(days=30)
SLA_WEEKS = 12
TREND_MONTHS = 12
TOP_REWARDS_WINDOW = timedelta(days=90)
TOP_REWARDS = 5
FIRST_SHOWN = 8  # "what needs you first": a short list, the queue page has the rest
UNASSIGNED_SHOWN = 5
# Backlog age buckets: (key, up to this age); the last one is open-ended.
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("lt_1d", timedelta(days=1)),
    ("1_3d", timedelta(days=3)),
    ("3_7d", timedelta(days=7)),
    ("7_30d", timedelta(days=30)),
    ("gt_30d", None),
)


# Time buckets ------------------------------------------------------------------------------------


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The first moment of a calendar day in a zone, in UTC."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def week_starts(now: datetime, zone: tzinfo, weeks: int) -> list[date]:
    """The Mondays of the last `weeks` calendar weeks in a zone, oldest first (this week last)."""
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    return [monday - timedelta(weeks=k) for k in range(weeks - 1, -1, -1)]


def month_starts(now: datetime, zone: tzinfo, months: int) -> list[date]:
    """The first days of the last `months` calendar months in a zone, oldest first (this month last)."""
    today = now.astimezone(zone).date()
    index = today.year * 12 + today.month - 1
    return [date((i // 12), i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def bucket_of(column, starts: list[datetime]) -> sa.Case:
    """The index of the bucket a timestamp falls in (buckets begin at `starts`); NULL before the first."""
    return sa.case(
        *[(column >= start, index) for index, start in reversed(list(enumerate(starts)))], else_=None
    )


def _bounds(days: list[date], zone: tzinfo) -> list[datetime]:
    return [local_midnight(day, zone) for day in days]


# An agent's queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueCounts:
    """An agent's open tickets by where they stand, and the open tickets nobody owns."""

    open: int
    due_today: int
    overdue: int
    waiting: int
    unassigned: int


@dataclass(frozen=True)
class QueueItem:
    """A ticket in a short list: enough to decide which to open first."""

    id: int
    reference: str
    subject: str
    summary: str | None  # a web ticket's summary of the customer's words (sealed; PII)
    priority: str
    status: str
    due: datetime | None  # the next target: the first reply until it is sent, then the resolution
    breached: bool
    paused: bool


def next_due() -> sa.ColumnElement:
    """The ticket's next target: the earlier of first reply (until sent) and resolution."""
    response = sa.case((Ticket.first_responded_at.is_(None), Ticket.first_response_due), else_=None)
    return sa.case(
        (response.is_(None), Ticket.resolution_due),
        (Ticket.resolution_due.is_(None), response),
        (response < Ticket.resolution_due, response),
        else_=Ticket.resolution_due,
    )


def _count(clause) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((clause, 1), else_=0)), 0)


def queue_counts(session: Session, staff_id: int, now: datetime, zone: tzinfo) -> QueueCounts:
    """One query: the agent's open, due-today (by midnight in their zone), overdue and waiting tickets."""
    tomorrow = local_midnight(now.astimezone(zone).date() + timedelta(days=1), zone)
    mine = mine_clause(staff_id)
    overdue = overdue_clause(now)
    due_today = sa.and_(mine, Ticket.paused_since.is_(None), sa.not_(overdue), next_due() < tomorrow)
    row = session.execute(
        sa.select(
            _count(mine),
            _count(due_today),
            _count(sa.and_(mine, overdue)),
            _count(sa.and_(mine, Ticket.status == "waiting_on_customer")),
            _count(unassigned_clause()),
        ).where(sa.or_(mine, unassigned_clause()))
    ).one()
    return QueueCounts(*(int(n) for n in row))


def _by_urgency(session: Session, clause, now: datetime, limit: int) -> list[QueueItem]:
    """Open tickets matching a clause: breached first, then the nearest due; paused ones last."""
    due = next_due()
    breached = breached_clause(now)
    query = (
        sa.select(
            Ticket.id,
            Ticket.reference,
            Ticket.subject,
            Ticket.summary,
            Ticket.priority,
            Ticket.status,
            due.label("due"),
            sa.case((breached, True), else_=False).label("breached"),
            Ticket.paused_since.is_not(None).label("paused"),
        )
        .where(clause)
        .order_by(
            sa.case((Ticket.paused_since.is_not(None), 2), (breached, 0), else_=1),
            sa.case((due.is_(None), 1), else_=0),
            due,
            Ticket.id,
        )
        .limit(limit)
    )
    return [
        QueueItem(
            r.id,
            r.reference or f"#{r.id}",
            r.subject,
            r.summary,
            r.priority,
            r.status,
            r.due,
            bool(r.breached),
            bool(r.paused),
        )
        for r in session.execute(query)
    ]


def needs_first(session: Session, staff_id: int, now: datetime, limit: int = FIRST_SHOWN) -> list[QueueItem]:
    """The agent's open tickets that need them first (one query)."""
    return _by_urgency(session, mine_clause(staff_id), now, limit)


def unassigned_first(session: Session, now: datetime, limit: int = UNASSIGNED_SHOWN) -> list[QueueItem]:
    """Open tickets nobody owns, most urgent first (one query)."""
    return _by_urgency(session, unassigned_clause(), now, limit)


# Service: SLA attainment and backlog -----------------------------------------------------------


@dataclass(frozen=True)
class Attainment:
    """How many tickets met a target, of those that reached it (share in %, None without any)."""

    met: int
    total: int

    @property
    def share(self) -> float | None:
        return round(100 * self.met / self.total, 1) if self.total else None


@dataclass(frozen=True)
class SlaWeek:
    start: date
    resolution: Attainment
    first_response: Attainment


@dataclass(frozen=True)
class SlaSummary:
    resolution: Attainment  # tickets resolved in the window, resolved by their resolution due time
    first_response: Attainment  # tickets first answered in the window, answered by their due time
    weeks: list[SlaWeek]


def resolved_in_time() -> sa.ColumnElement[bool]:
    """Resolved by the resolution due time and never flagged as breached."""
    return sa.and_(
        Ticket.resolution_breached.is_(False),
        sa.or_(Ticket.resolution_due.is_(None), Ticket.resolved_at <= Ticket.resolution_due),
    )


def responded_in_time() -> sa.ColumnElement[bool]:
    """First answered by the first-response due time and never flagged as breached."""
    return sa.and_(
        Ticket.first_response_breached.is_(False),
        sa.or_(Ticket.first_response_due.is_(None), Ticket.first_responded_at <= Ticket.first_response_due),
    )


def _attainment_by_week(session: Session, stamp, in_time, starts: list[datetime], end: datetime) -> dict:
    """{week index: Attainment} of tickets whose `stamp` falls in each week (one query)."""
    inner = (
        sa.select(
            bucket_of(stamp, starts).label("week"),
            sa.case((in_time, 1), else_=0).label("met"),
        )
        .where(stamp >= starts[0], stamp < end)
        .subquery()
    )
    rows = session.execute(
        sa.select(inner.c.week, sa.func.sum(inner.c.met), sa.func.count()).group_by(inner.c.week)
    )
    return {week: Attainment(int(met), int(total)) for week, met, total in rows}


def sla_attainment(session: Session, now: datetime) -> tuple[Attainment, Attainment]:
    """Resolution and first-response attainment over the last 30 days (one query)."""
    since = now - SLA_WINDOW
    resolved = sa.and_(Ticket.resolved_at >= since, Ticket.resolved_at <= now)
    responded = sa.and_(Ticket.first_responded_at >= since, Ticket.first_responded_at <= now)
    row = session.execute(
        sa.select(
            _count(sa.and_(resolved, resolved_in_time())),
            _count(resolved),
            _count(sa.and_(responded, responded_in_time())),
            _count(responded),
        ).where(sa.or_(resolved, responded))
    ).one()
    return Attainment(int(row[0]), int(row[1])), Attainment(int(row[2]), int(row[3]))


def sla_summary(session: Session, now: datetime, zone: tzinfo, weeks: int = SLA_WEEKS) -> SlaSummary:
    """SLA attainment over the last 30 days, and per calendar week (three queries)."""
    resolution, first_response = sla_attainment(session, now)
    days = week_starts(now, zone, weeks)
    starts = _bounds(days, zone)
    end = local_midnight(days[-1] + timedelta(weeks=1), zone)
    by_resolution = _attainment_by_week(session, Ticket.resolved_at, resolved_in_time(), starts, end)
    by_response = _attainment_by_week(session, Ticket.first_responded_at, responded_in_time(), starts, end)
    empty = Attainment(0, 0)
    return SlaSummary(
        resolution=resolution,
        first_response=first_response,
        weeks=[
            SlaWeek(day, by_resolution.get(i, empty), by_response.get(i, empty)) for i, day in enumerate(days)
        ],
    )


@dataclass(frozen=True)
class Backlog:
    open: int
    by_age: list[tuple[str, int]]  # (AGE_BUCKETS key, open tickets of that age)


def backlog(session: Session, now: datetime) -> Backlog:
    """Open tickets and how long they have been open (one query)."""
    columns = []
    younger_than = None
    for _key, age in AGE_BUCKETS:
        older = Ticket.created_at <= now - younger_than if younger_than else sa.true()
        newer = Ticket.created_at > now - age if age else sa.true()
        columns.append(_count(sa.and_(older, newer)))
        younger_than = age
    counts = [int(n) for n in session.execute(sa.select(*columns).where(open_clause())).one()]
    return Backlog(sum(counts), [(key, n) for (key, _age), n in zip(AGE_BUCKETS, counts, strict=True)])


def open_count(session: Session) -> int:
    """Open tickets, the team's backlog (one query)."""
    return session.scalar(sa.select(sa.func.count(Ticket.id)).where(open_clause())) or 0


# Satisfaction and loyalty -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreMonth:
    start: date
    nps_answers: int
    nps: float | None
    csat_answers: int
    csat: float | None


def satisfaction_trend(
    session: Session, now: datetime, zone: tzinfo, months: int = TREND_MONTHS
) -> list[ScoreMonth]:
    """NPS and CSAT per calendar month over every survey (one query of counts per month and value).

    The scores come from insights.scores, the same definitions as the survey results page.
    """
    days = month_starts(now, zone, months)
    starts = _bounds(days, zone)
    inner = (
        sa.select(
            bucket_of(SurveyResponse.submitted_at, starts).label("month"),
            Question.kind.label("kind"),
            Answer.number.label("number"),
        )
        .join(Answer, Answer.response_id == SurveyResponse.id)
        .join(Question, Question.id == Answer.question_id)
        .where(
            Question.kind.in_(("nps", "rating")),
            Answer.number.is_not(None),
            SurveyResponse.submitted_at >= starts[0],
            SurveyResponse.submitted_at <= now,
        )
        .subquery()
    )
    counts: dict[tuple[int, str], Counter] = defaultdict(Counter)
    query = sa.select(inner.c.month, inner.c.kind, inner.c.number, sa.func.count()).group_by(
        inner.c.month, inner.c.kind, inner.c.number
    )
    for month, kind, number, n in session.execute(query):
        counts[(month, kind)][number] += n
    result = []
    for i, day in enumerate(days):
        month_nps = nps(counts[(i, "nps")].elements())
        month_csat = csat(counts[(i, "rating")].elements())
        result.append(
            ScoreMonth(day, month_nps.responses, month_nps.score, month_csat.responses, month_csat.score)
        )
    return result


@dataclass(frozen=True)
class PointsMonth:
    start: date
    issued: int  # earned on purchases plus positive adjustments
    redeemed: int  # spent on rewards, less the points given back for cancelled coupons


def points_by_month(
    session: Session, now: datetime, zone: tzinfo, months: int = TREND_MONTHS
) -> list[PointsMonth]:
    """Points issued and redeemed per calendar month (one query)."""
    days = month_starts(now, zone, months)
    starts = _bounds(days, zone)
    issued = sa.or_(PointsEntry.kind == "earn", sa.and_(PointsEntry.kind == "adjust", PointsEntry.points > 0))
    redeemed = sa.or_(
        PointsEntry.kind == "redeem",
        sa.and_(PointsEntry.kind == "reverse", PointsEntry.redemption_id.is_not(None)),
    )
    inner = (
        sa.select(
            bucket_of(PointsEntry.created_at, starts).label("month"),
            sa.case((issued, PointsEntry.points), else_=0).label("issued"),
            sa.case((redeemed, -PointsEntry.points), else_=0).label("redeemed"),
        )
        .where(PointsEntry.created_at >= starts[0], PointsEntry.created_at <= now)
        .subquery()
    )
    rows = session.execute(
        sa.select(inner.c.month, sa.func.sum(inner.c.issued), sa.func.sum(inner.c.redeemed)).group_by(
            inner.c.month
        )
    )
    sums = {month: (int(i or 0), int(r or 0)) for month, i, r in rows}
    return [PointsMonth(day, *sums.get(i, (0, 0))) for i, day in enumerate(days)]


@dataclass(frozen=True)
class RewardLine:
    reward_id: int
    name_en: str
    name_zh: str
    redemptions: int
    points: int


def top_rewards(
    session: Session, now: datetime, window: timedelta = TOP_REWARDS_WINDOW, limit: int = TOP_REWARDS
) -> list[RewardLine]:
    """The rewards redeemed most in the window (cancelled coupons not counted; one query)."""
    count = sa.func.count(Redemption.id)
    query = (
        sa.select(Reward.id, Reward.name_en, Reward.name_zh, count, sa.func.sum(Redemption.points))
        .join(Redemption, Redemption.reward_id == Reward.id)
        .where(
            Redemption.created_at >= now - window,
            Redemption.created_at <= now,
            Redemption.status != "cancelled",
        )
        .group_by(Reward.id, Reward.name_en, Reward.name_zh)
        .order_by(count.desc(), Reward.id)
        .limit(limit)
    )
    return [RewardLine(i, en, zh, int(n), int(p or 0)) for i, en, zh, n, p in session.execute(query)]


def customer_count(session: Session) -> int:
    """Every customer on file (one query)."""
    return session.scalar(sa.select(sa.func.count(Customer.id))) or 0
