"""The points ledger: accounts and balances, postings, adjustments, expiry and statements.

Every change to a balance is one atomic `UPDATE ... WHERE balance + delta >= 0` plus one
ledger entry, in the caller's unit of work; the database refuses a negative balance too, and
its triggers keep the ledger append-only. The entry's `actor` is the unit of work's actor.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Model, UTCDateTime, db, one_of, utcnow
from models.loyalty.programme import BASE_TIER, InsufficientPoints, LoyaltyError
from models.uow import current_uow

ENTRY_KINDS = ("earn", "redeem", "adjust", "expire", "reverse")
ENTRY_LABELS = {
    "earn": _l("Earned"),
    "redeem": _l("Redeemed"),
    "adjust": _l("Adjusted"),
    "expire": _l("Expired"),
    "reverse": _l("Reversed"),
}
# Reasons the system writes on its own, shown in the reader's language (free text stays as typed).
REASON_LABELS = {
    "purchase": _l("Purchase"),
    "refund": _l("Refund"),
    "points expired": _l("Points expired"),
    "coupon cancelled": _l("Coupon cancelled"),
}
REWARD_REASON = re.compile(r"reward \d+")  # written by redeem(): "reward <id>"


def reason_label(reason: str | None) -> str:
    """A ledger entry's reason for a reader: the system's own reasons in words, free text as typed."""
    if reason in REASON_LABELS:
        return str(REASON_LABELS[reason])
    if reason and REWARD_REASON.fullmatch(reason):
        return str(_l("Reward redeemed"))
    return reason or ""


class LoyaltyAccount(Model):
    """A customer's points balance and tier; changed only together with a ledger entry."""

    __tablename__ = "loyalty_account"
    __table_args__ = (sa.CheckConstraint("balance >= 0", name="balance_not_negative"),)

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), primary_key=True)
    balance: Mapped[int] = mapped_column(default=0)
    tier_code: Mapped[str] = mapped_column(sa.String(32), default=BASE_TIER)
    tier_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    customer = relationship("Customer", lazy="select")

    def __str__(self) -> str:
        return f"{self.customer}: {self.balance}"


class PointsEntry(Model):
    """One line of the append-only points ledger."""

    __tablename__ = "points_entry"
    __table_args__ = (
        one_of("kind", ENTRY_KINDS, "kind"),
        sa.CheckConstraint("points <> 0", name="points_not_zero"),
        sa.CheckConstraint("balance_after >= 0", name="balance_after"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    points: Mapped[int]
    balance_after: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    actor: Mapped[str] = mapped_column(sa.String(254), default="system")
    reference: Mapped[str | None] = mapped_column(sa.String(100))
    purchase_id: Mapped[int | None] = mapped_column(sa.ForeignKey("purchase.id"), index=True)
    redemption_id: Mapped[int | None] = mapped_column(sa.ForeignKey("redemption.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Credits carry the moment they lapse; debits have none.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    customer = relationship("Customer", lazy="select")

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d}"


# Accounts --------------------------------------------------------------------------------


def _insert_ignoring_conflict(table: sa.Table, values: dict) -> None:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(table).values(**values).on_conflict_do_nothing())


def ensure_account(customer_id: int) -> None:
    """Create the customer's loyalty account if it does not exist (safe under concurrency)."""
    _insert_ignoring_conflict(
        LoyaltyAccount.__table__,
        {
            "customer_id": customer_id,
            "balance": 0,
            "tier_code": BASE_TIER,
            "tier_since": utcnow(),
            "updated_at": utcnow(),
        },
    )


def account_state(customer_id: int, create: bool = False) -> tuple[int, str]:
    """A member's (balance, tier code); without an account, 0 points in the base tier.

    With `create`, a missing account is opened first (inside the caller's unit of work).
    """
    table = LoyaltyAccount.__table__
    query = sa.select(table.c.balance, table.c.tier_code).where(table.c.customer_id == customer_id)
    row = db.session.execute(query).first()
    if row is None and create:
        ensure_account(customer_id)
        row = db.session.execute(query).first()
    return (row[0], row[1]) if row else (0, BASE_TIER)


def balance_of(customer_id: int) -> int:
    """The customer's current balance (0 without an account)."""
    return (
        db.session.scalar(sa.select(LoyaltyAccount.balance).where(LoyaltyAccount.customer_id == customer_id))
        or 0
    )


def ledger_sum(customer_id: int) -> int:
    """The sum of the customer's ledger entries (always equal to the balance)."""
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0)).where(
            PointsEntry.customer_id == customer_id
        )
    )
    return int(total or 0)


# Postings --------------------------------------------------------------------------------


@dataclass
class Posting:
    """One change to a balance, described for the ledger."""

    customer_id: int
    kind: str
    points: int
    reason: str = ""
    reference: str | None = None
    purchase_id: int | None = None
    redemption_id: int | None = None
    expires_at: datetime | None = None


def change_balance(customer_id: int, points: int, now: datetime) -> tuple[int, str]:
    """Add `points` to the balance in one atomic UPDATE; returns (new balance, tier code).

    Raises InsufficientPoints, having changed nothing, when the balance would go negative.
    Every call must be followed by its ledger entry (write_entry) in the same unit of work.
    """
    if points == 0:
        raise LoyaltyError(str(_l("A posting must change the balance.")))
    table = LoyaltyAccount.__table__
    row = db.session.execute(
        sa.update(table)
        .where(table.c.customer_id == customer_id, table.c.balance + points >= 0)
        .values(balance=table.c.balance + points, updated_at=now)
        .returning(table.c.balance, table.c.tier_code)
    ).first()
    if row is None:
        raise InsufficientPoints(str(_l("Not enough points.")))
    loaded = db.session.identity_map.get(db.session.identity_key(LoyaltyAccount, customer_id))
    if loaded is not None:  # the UPDATE above bypassed the ORM: tell the loaded account
        sa.orm.attributes.set_committed_value(loaded, "balance", row[0])
    return row[0], row[1]


def write_entry(posting: Posting, balance_after: int, now: datetime) -> PointsEntry:
    """The ledger entry of a balance change; returns a detached copy for the caller to read."""
    values = {
        "customer_id": posting.customer_id,
        "kind": posting.kind,
        "points": posting.points,
        "balance_after": balance_after,
        "reason": posting.reason[:500],
        "actor": current_uow().actor.label[:254],
        "reference": posting.reference,
        "purchase_id": posting.purchase_id,
        "redemption_id": posting.redemption_id,
        "expires_at": posting.expires_at,
        "created_at": now,
    }
    # A Core INSERT: the hot path of every purchase and redemption skips the ORM's flush.
    new_id = db.session.execute(
        sa.insert(PointsEntry.__table__).values(values).returning(PointsEntry.id)
    ).scalar()
    return PointsEntry(id=new_id, **values)


def post_points(posting: Posting, now: datetime | None = None) -> PointsEntry:
    """Apply a posting to the balance atomically and write its ledger entry.

    Raises InsufficientPoints (and changes nothing) when the balance would go negative.
    """
    now = now or utcnow()
    balance, _tier_code = change_balance(posting.customer_id, posting.points, now)
    return write_entry(posting, balance, now)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (clamped to the month's last day)."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expiry_for(earned_at: datetime) -> datetime | None:
    """When points earned at a moment lapse (POINTS_EXPIRE_MONTHS; 0 means never)."""
    months = int(current_app.config.get("POINTS_EXPIRE_MONTHS", 24))
    return add_months(earned_at, months) if months > 0 else None


def adjust_points(customer_id: int, points: int, reason: str, *, now: datetime | None = None) -> PointsEntry:
    """A manual adjustment (managers only, reason required); credits lapse like earned points."""
    if not reason or not reason.strip():
        raise LoyaltyError(str(_l("An adjustment needs a reason.")))
    now = now or utcnow()
    if points > 0:  # a debit needs an account with points anyway
        ensure_account(customer_id)
    entry = post_points(
        Posting(
            customer_id,
            "adjust",
            points,
            reason=reason.strip(),
            expires_at=expiry_for(now) if points > 0 else None,
        ),
        now,
    )
    current_uow().audit("points.adjust", "customer", customer_id, ["points", "reason"])
    return entry


# Expiry ----------------------------------------------------------------------------------


def expire_points(now: datetime | None = None) -> dict[int, int]:
    """Expire lapsed points, oldest first, as ledger entries; returns {customer_id: points}.

    Under first-in-first-out spending, what must have lapsed by `now` is the credit that
    lapsed by now minus everything spent or expired so far (never less than zero). Running
    it twice expires nothing more.
    """
    now = now or utcnow()
    uow = current_uow()
    lapsed = sa.func.coalesce(
        sa.func.sum(sa.case((PointsEntry.expires_at <= now, PointsEntry.points), else_=0)), 0
    )
    spent = sa.func.coalesce(
        sa.func.sum(
            sa.case(
                (sa.and_(PointsEntry.expires_at.is_(None), PointsEntry.points < 0), -PointsEntry.points),
                else_=0,
            )
        ),
        0,
    )
    rows = db.session.execute(
        sa.select(PointsEntry.customer_id, lapsed - spent)
        .group_by(PointsEntry.customer_id)
        .having(lapsed - spent > 0)
    ).all()
    expired = {}
    for customer_id, due in rows:
        amount = min(int(due), balance_of(customer_id))
        if amount > 0:
            post_points(Posting(customer_id, "expire", -amount, reason="points expired"), now)
            expired[customer_id] = amount
    if expired:
        uow.audit(
            "points.expire",
            "points_entry",
            None,
            ["points"],
            detail=f"customers={len(expired)} points={sum(expired.values())}",
        )
    return expired


# Statements ------------------------------------------------------------------------------


@dataclass
class StatementLine:
    expires_at: datetime
    points: int


def expiring_points(customer_id: int) -> list[StatementLine]:
    """What of the balance lapses when, oldest first (first in, first out)."""
    entries = db.session.execute(
        sa.select(PointsEntry.points, PointsEntry.expires_at).where(PointsEntry.customer_id == customer_id)
    ).all()
    spent = sum(-p for p, at in entries if at is None and p < 0)
    lots: dict[datetime, int] = {}
    for points, at in entries:
        if at is not None:
            lots[at] = lots.get(at, 0) + points
    lines = []
    for at in sorted(lots):
        used = min(spent, max(lots[at], 0))
        spent -= used
        if lots[at] - used > 0:
            lines.append(StatementLine(at, lots[at] - used))
    return lines


def recent_ledger(customer_id: int, limit: int = 20) -> list[PointsEntry]:
    """The customer's latest ledger entries, newest first."""
    return list(
        db.session.scalars(
            sa.select(PointsEntry)
            .where(PointsEntry.customer_id == customer_id)
            .order_by(PointsEntry.id.desc())
            .limit(limit)
        )
    )
