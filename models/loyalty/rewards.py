"""The reward catalogue and redemptions: points and stock taken atomically, unique unguessable coupons."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import BilingualName, Model, UTCDateTime, db, one_of, utcnow
from models.loyalty.ledger import (
    LoyaltyAccount,
    Posting,
    change_balance,
    expiry_for,
    post_points,
    write_entry,
)
from models.loyalty.programme import DatedWindow, LoyaltyError, tiers
from models.uow import current_uow

COUPON_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read out loud safely
REDEMPTION_STATUSES = ("issued", "used", "cancelled")
REDEMPTION_LABELS = {"issued": _l("Issued"), "used": _l("Used"), "cancelled": _l("Cancelled")}


class OutOfStock(LoyaltyError):
    code, status = "out_of_stock", 409


class NotEligible(LoyaltyError):
    code, status = "not_eligible", 422


class Reward(DatedWindow, BilingualName, Model):
    """Something customers can redeem points for; optionally limited in stock, time or tier."""

    __tablename__ = "reward"
    __table_args__ = (
        sa.CheckConstraint("points_cost > 0", name="points_cost"),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        sa.CheckConstraint("starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at", name="window"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name_en: Mapped[str] = mapped_column(sa.String(100))
    name_zh: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    points_cost: Mapped[int]
    stock: Mapped[int | None]  # None: unlimited
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    min_tier: Mapped[str | None] = mapped_column(sa.String(32))
    active: Mapped[bool] = mapped_column(default=True)


class Redemption(Model):
    """Points exchanged for a reward, with the coupon code the customer shows."""

    __tablename__ = "redemption"
    __table_args__ = (one_of("status", REDEMPTION_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    reward_id: Mapped[int] = mapped_column(sa.ForeignKey("reward.id"), index=True)
    points: Mapped[int]
    coupon_code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="issued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer = relationship("Customer", lazy="select")
    reward = relationship(Reward, lazy="joined")

    def __str__(self) -> str:
        return self.coupon_code


@dataclass
class RedemptionResult:
    """A new redemption (a detached copy) and the member's balance and tier after it."""

    redemption: Redemption
    balance: int
    tier: str


def new_coupon_code() -> str:
    """16 characters from a 32-letter alphabet: 80 random bits, in groups of four."""
    raw = "".join(secrets.choice(COUPON_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def available_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Rewards on offer at a moment: active and inside their window."""
    return sa.and_(
        Reward.active.is_(True),
        sa.or_(Reward.starts_at.is_(None), Reward.starts_at <= now),
        sa.or_(Reward.ends_at.is_(None), Reward.ends_at > now),
    )


def available_rewards(now: datetime) -> list[Reward]:
    """The reward catalogue as customers may redeem it now, cheapest first."""
    return list(
        db.session.scalars(sa.select(Reward).where(available_clause(now)).order_by(Reward.points_cost))
    )


def _check_eligible(reward: Reward, customer_id: int, now: datetime) -> None:
    if (
        not reward.active
        or (reward.starts_at and now < reward.starts_at)
        or (reward.ends_at and now >= reward.ends_at)
    ):
        raise NotEligible(str(_l("This reward is not available now.")))
    if reward.min_tier:
        order = [tier.code for tier in tiers()]
        account = db.session.get(LoyaltyAccount, customer_id)
        have = order.index(account.tier_code) if account and account.tier_code in order else 0
        need = order.index(reward.min_tier) if reward.min_tier in order else len(order)
        if have < need:
            raise NotEligible(str(_l("This reward is for higher tiers only.")))


def _take_stock(reward_id: int) -> bool:
    """Take one from a limited reward's stock, atomically; False if none is left."""
    table = Reward.__table__
    taken = db.session.execute(
        sa.update(table)
        .where(table.c.id == reward_id, table.c.stock > 0)
        .values(stock=table.c.stock - 1)
        .returning(table.c.id)
    ).first()
    return taken is not None


def redeem(customer_id: int, reward_id: int, now: datetime | None = None) -> RedemptionResult:
    """Exchange points for a reward, in the caller's unit of work: points and stock taken atomically.

    Raises NotEligible, InsufficientPoints or OutOfStock having changed nothing, so a caller
    may go on with its unit of work.
    """
    now = now or utcnow()
    uow = current_uow()
    reward = db.session.get(Reward, reward_id)
    if reward is None:
        raise NotEligible(str(_l("No such reward.")))
    _check_eligible(reward, customer_id, now)  # no account yet: the points are refused below
    # Points first, then stock: a refusal of the points changes nothing, and this is the order
    # in which cancel_redemption takes the same rows (no deadlock between the two).
    balance, tier = change_balance(customer_id, -reward.points_cost, now)
    if reward.stock is not None and not _take_stock(reward_id):  # unlimited rewards need no row lock
        change_balance(customer_id, reward.points_cost, now)  # give back: no ledger entry was written
        raise OutOfStock(str(_l("This reward is out of stock.")))
    coupon_code = new_coupon_code()
    values = {
        "customer_id": customer_id,
        "reward_id": reward_id,
        "points": reward.points_cost,
        "coupon_code": coupon_code,
        "status": "issued",
        "created_at": now,
    }
    new_id = db.session.execute(
        sa.insert(Redemption.__table__).values(values).returning(Redemption.__table__.c.id)
    ).scalar_one()
    posting = Posting(
        customer_id,
        "redeem",
        -reward.points_cost,
        reason=f"reward {reward_id}",
        reference=coupon_code,
        redemption_id=new_id,
    )
    write_entry(posting, balance, now)
    if reward.stock is not None:
        db.session.expire(reward, ["stock"])  # taken by a Core UPDATE
    uow.audit("redemption.create", "redemption", new_id, ["coupon_code", "points", "reward_id", "status"])
    return RedemptionResult(Redemption(id=new_id, **values), balance, tier)


def mark_used(redemption: Redemption, now: datetime | None = None) -> None:
    """The coupon was used at the till, in the caller's unit of work."""
    if redemption.status != "issued":
        raise LoyaltyError(str(_l("Only an issued coupon can be used.")))
    redemption.status, redemption.used_at = "used", now or utcnow()
    current_uow().audit("redemption.use", "redemption", redemption.id, ["status", "used_at"])


def cancel_redemption(redemption_id: int, now: datetime | None = None) -> Redemption:
    """Cancel an issued coupon: the points come back and the stock too, in the caller's unit of work.

    Raises LoyaltyError, having changed nothing, unless the coupon is issued.
    """
    now = now or utcnow()
    uow = current_uow()
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None or redemption.status != "issued":
        raise LoyaltyError(str(_l("Only an issued coupon can be cancelled.")))
    redemption.status, redemption.cancelled_at = "cancelled", now
    post_points(
        Posting(
            redemption.customer_id,
            "reverse",
            redemption.points,
            reason="coupon cancelled",
            reference=redemption.coupon_code,
            redemption_id=redemption.id,
            expires_at=expiry_for(now),
        ),
        now,
    )
    table = Reward.__table__
    db.session.execute(
        sa.update(table)
        .where(table.c.id == redemption.reward_id, table.c.stock.is_not(None))
        .values(stock=table.c.stock + 1)
    )
    uow.audit("redemption.cancel", "redemption", redemption.id, ["status", "cancelled_at"])
    return redemption
