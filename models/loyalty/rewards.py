"""The reward catalogue and redemptions: points and stock taken atomically, unique unguessable coupons."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
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
COUPON_PATTERN = re.compile(f"[{COUPON_ALPHABET}]{{4}}(-[{COUPON_ALPHABET}]{{4}}){{3}}")
REDEMPTION_STATUSES = ("issued", "used", "cancelled")
REDEMPTION_LABELS = {"issued": _l("Issued"), "used": _l("Used"), "cancelled": _l("Cancelled")}


class OutOfStock(LoyaltyError):
    code, status = "out_of_stock", 409


class NotEligible(LoyaltyError):
    code, status = "not_eligible", 422


class AlreadyRedeemed(LoyaltyError):
    """The coupon code given was issued before: the same redemption asked for twice."""

    code, status = "already_redeemed", 409

    def __init__(self, message: str, coupon_code: str) -> None:
        super().__init__(message)
        self.coupon_code = coupon_code


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


def tier_allows(min_tier: str | None, tier_code: str | None, order: list[str]) -> bool:
    """Whether a member of a tier may have a reward for `min_tier` and up (tiers lowest first)."""
    if not min_tier:
        return True
    have = order.index(tier_code) if tier_code in order else 0
    need = order.index(min_tier) if min_tier in order else len(order)
    return have >= need


def _check_eligible(reward: Reward, customer_id: int, now: datetime) -> None:
    if (
        not reward.active
        or (reward.starts_at and now < reward.starts_at)
        or (reward.ends_at and now >= reward.ends_at)
    ):
        raise NotEligible(str(_l("This reward is not available now.")))
    if reward.min_tier:
        account = db.session.get(LoyaltyAccount, customer_id)
        tier_code = account.tier_code if account else None
        if not tier_allows(reward.min_tier, tier_code, [tier.code for tier in tiers()]):
            raise NotEligible(str(_l("This reward is for higher tiers only.")))


def redeemable_rewards(customer_id: int, now: datetime | None = None) -> list[Reward]:
    """The rewards this customer could redeem now: on offer, in stock, for their tier, affordable.

    A list to offer; redeem() checks each rule again when the redemption is made.
    """
    now = now or utcnow()
    account = db.session.get(LoyaltyAccount, customer_id)
    balance, tier_code = (account.balance, account.tier_code) if account else (0, None)
    order = [tier.code for tier in tiers()]
    return [
        reward
        for reward in available_rewards(now)
        if reward.stock != 0
        and reward.points_cost <= balance
        and tier_allows(reward.min_tier, tier_code, order)
    ]


def coupon_issued(coupon_code: str) -> Redemption | None:
    """The redemption that issued a coupon code, if any."""
    return db.session.scalar(sa.select(Redemption).where(Redemption.coupon_code == coupon_code))


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


def _insert_unless_issued(values: dict) -> int | None:
    """INSERT ... ON CONFLICT (coupon_code) DO NOTHING RETURNING id: None if the code was issued.

    On PostgreSQL a concurrent insert of the same code waits for the other transaction and then
    does nothing, leaving this transaction intact (no IntegrityError to roll back).
    """
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Redemption.__table__)
        .values(values)
        .on_conflict_do_nothing(index_elements=["coupon_code"])
        .returning(Redemption.__table__.c.id)
    )
    return db.session.execute(statement).scalar()


def _give_back_stock(reward_id: int) -> None:
    table = Reward.__table__
    db.session.execute(
        sa.update(table)
        .where(table.c.id == reward_id, table.c.stock.is_not(None))
        .values(stock=table.c.stock + 1)
    )


def redeem(
    customer_id: int, reward_id: int, now: datetime | None = None, *, coupon_code: str | None = None
) -> RedemptionResult:
    """Exchange points for a reward, in the caller's unit of work: points and stock taken atomically.

    `coupon_code`, drawn beforehand with new_coupon_code(), makes the call idempotent: a form
    sent twice asks for the same code, and the second time is refused with AlreadyRedeemed.
    Raises NotEligible, InsufficientPoints, OutOfStock or AlreadyRedeemed having changed
    nothing, so a caller may go on with its unit of work.
    """
    now = now or utcnow()
    uow = current_uow()
    if coupon_code is not None:
        if not COUPON_PATTERN.fullmatch(coupon_code):
            raise NotEligible(str(_l("This coupon code is not valid.")))
        if coupon_issued(coupon_code) is not None:
            raise AlreadyRedeemed(str(_l("This redemption was made already.")), coupon_code)
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
    coupon_code = coupon_code or new_coupon_code()
    values = {
        "customer_id": customer_id,
        "reward_id": reward_id,
        "points": reward.points_cost,
        "coupon_code": coupon_code,
        "status": "issued",
        "created_at": now,
    }
    new_id = _insert_unless_issued(values)
    if new_id is None:  # the same code, issued a moment ago by a concurrent request: give back
        change_balance(customer_id, reward.points_cost, now)
        if reward.stock is not None:
            _give_back_stock(reward_id)
        raise AlreadyRedeemed(str(_l("This redemption was made already.")), coupon_code)
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
    _give_back_stock(redemption.reward_id)
    uow.audit("redemption.cancel", "redemption", redemption.id, ["status", "cancelled_at"])
    return redemption
