"""Member tiers: each member's tier from rolling 12-month spend, with the history of every move."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Model, UTCDateTime, db, utcnow
from models.loyalty.ledger import LoyaltyAccount, account_state
from models.loyalty.programme import Tier, tier_for_spend, tiers
from models.loyalty.purchases import Purchase
from models.uow import current_uow


class TierChange(Model):
    """Tier history: every move up or down, with its reason."""

    __tablename__ = "tier_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    from_tier: Mapped[str | None] = mapped_column(sa.String(32))
    to_tier: Mapped[str] = mapped_column(sa.String(32))
    spend: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    reason: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer = relationship("Customer", lazy="select")

    def __str__(self) -> str:
        return f"{self.from_tier} → {self.to_tier}"


def spend_last_year(customer_id: int, now: datetime) -> Decimal:
    """What the customer spent in the twelve months before `now` (refunds not counted)."""
    return db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Purchase.amount), 0)).where(
            Purchase.customer_id == customer_id,
            Purchase.status == "completed",
            Purchase.purchased_at > now - timedelta(days=365),
        )
    ) or Decimal(0)


def _move_tier(account: LoyaltyAccount, tier: Tier, spend: Decimal, reason: str, now: datetime) -> None:
    db.session.add(
        TierChange(
            customer_id=account.customer_id,
            from_tier=account.tier_code,
            to_tier=tier.code,
            spend=spend,
            reason=reason,
            at=now,
        )
    )
    account.tier_code, account.tier_since = tier.code, now


def reevaluate_tier(
    customer_id: int, now: datetime, reason: str, ladder: list[Tier] | None = None, current: str | None = None
) -> str:
    """Put the customer in the tier their rolling 12-month spend earns; returns the tier code.

    Part of the caller's change (a purchase, a refund): audited with it.
    """
    if current is None:
        current = account_state(customer_id, create=True)[1]
    spend = Decimal(spend_last_year(customer_id, now))
    tier = tier_for_spend(spend, ladder if ladder is not None else tiers())
    if tier is None or tier.code == current:
        return current
    account = db.session.get(LoyaltyAccount, customer_id)
    if account is not None:
        _move_tier(account, tier, spend, reason, now)
    return tier.code


def recompute_tiers(now: datetime | None = None) -> int:
    """Re-evaluate every account's tier from one grouped query; returns how many moved.

    Runs in the caller's unit of work; running it twice moves nobody the second time.
    """
    now = now or utcnow()
    uow = current_uow()
    ladder = tiers()
    spend = dict(
        db.session.execute(
            sa.select(Purchase.customer_id, sa.func.sum(Purchase.amount))
            .where(Purchase.status == "completed", Purchase.purchased_at > now - timedelta(days=365))
            .group_by(Purchase.customer_id)
        ).all()
    )
    moved = 0
    for account in db.session.scalars(sa.select(LoyaltyAccount)):
        total = Decimal(spend.get(account.customer_id) or 0)
        tier = tier_for_spend(total, ladder)
        if tier is not None and tier.code != account.tier_code:
            _move_tier(account, tier, total, "recompute", now)
            moved += 1
    if moved:
        uow.audit("tier.recompute", "loyalty_account", None, ["tier_code"], detail=f"moved={moved}")
    return moved
