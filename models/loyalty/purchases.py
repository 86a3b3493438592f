"""Purchases: recorded once per (source, order reference), earning points; refunds reverse them.

Every door (the panel, the CSV import, the JSON API) records a purchase with the same rules:
valid amount and currency, a known customer, never dated in the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Model, UTCDateTime, db, one_of, utcnow
from models.loyalty.ledger import (
    PointsEntry,
    Posting,
    account_state,
    balance_of,
    expiry_for,
    post_points,
)
from models.loyalty.programme import DuplicateOrder, LoyaltyError, UnknownCustomer, points_for, programme
from models.uow import current_uow

# Where a purchase was made; one list for the panel, CSV imports and the API.
PURCHASE_CHANNELS = {
    "store": _l("In store"),
    "online": _l("Online shop"),
    "app": _l("App"),
    "phone": _l("Phone"),
    "other": _l("Other"),
}
PURCHASE_STATUSES = ("completed", "refunded")
PURCHASE_STATUS_LABELS = {"completed": _l("Completed"), "refunded": _l("Refunded")}
# Sources the app itself writes; an integration's own source name (its API key's) is shown as typed.
PURCHASE_SOURCE_LABELS = {
    "admin": _l("Entered in the panel"),
    "csv": _l("CSV import"),
    "pos": _l("Point of sale"),
    "api": _l("API"),
}
MONEY = Decimal("0.01")
# What a purchase.create audit event names (fields, never values).
AUDITED_FIELDS = ("amount", "channel", "customer_id", "order_ref", "points", "purchased_at")


class Purchase(Model):
    """A purchase that earns points; its order reference is unique per source (idempotency)."""

    __tablename__ = "purchase"
    __table_args__ = (
        sa.UniqueConstraint("source", "order_ref", name="uq_purchase_source_order_ref"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        one_of("status", PURCHASE_STATUSES, "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(32))
    order_ref: Mapped[str] = mapped_column(sa.String(64))
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    channel: Mapped[str] = mapped_column(sa.String(16), default="store")
    purchased_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    points: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default="completed")
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer = relationship("Customer", lazy="select")

    def __str__(self) -> str:
        return f"{self.source}:{self.order_ref}"


@dataclass
class PurchaseResult:
    purchase: Purchase
    created: bool
    balance: int
    tier: str
    member_no: str | None = None


@dataclass
class NewPurchase:
    customer_id: int
    source: str
    order_ref: str
    amount: Decimal
    currency: str
    channel: str = "store"
    purchased_at: datetime | None = None
    # Set by callers that looked the customer up already (the API): no second look-up.
    member_no: str | None = None


def member_no_of(customer_id: int) -> str | None:
    """A customer's member number, None if there is no such customer."""
    from models.customer import Customer  # customers import loyalty rules back (deletion guard)

    return db.session.scalar(sa.select(Customer.member_no).where(Customer.id == customer_id))


def validate_purchase(spec: NewPurchase, now: datetime | None = None) -> None:
    """Refuse a purchase that cannot be recorded, with a clear message."""
    base = current_app.config.get("LOYALTY_CURRENCY", "CNY")
    if spec.currency.upper() != base:
        raise LoyaltyError(str(_l("Purchases are recorded in %(currency)s.", currency=base)))
    if spec.amount <= 0 or spec.amount != spec.amount.quantize(MONEY):
        raise LoyaltyError(str(_l("The amount must be positive, with at most two decimals.")))
    if not spec.order_ref.strip() or len(spec.order_ref) > 64:
        raise LoyaltyError(str(_l("An order reference of 1 to 64 characters is required.")))
    if spec.channel not in PURCHASE_CHANNELS:
        raise LoyaltyError(f"channel must be one of {', '.join(PURCHASE_CHANNELS)}.")
    if spec.purchased_at is not None and spec.purchased_at > (now or utcnow()):
        raise LoyaltyError(str(_l("The purchase time (purchased_at) cannot be in the future.")))
    if spec.member_no is None:
        spec.member_no = member_no_of(spec.customer_id)
        if spec.member_no is None:
            raise UnknownCustomer(str(_l("No such customer.")))


def find_purchase(source: str, order_ref: str) -> Purchase | None:
    """The purchase a source recorded under an order reference, if any."""
    return db.session.scalar(
        sa.select(Purchase).where(Purchase.source == source, Purchase.order_ref == order_ref)
    )


def has_loyalty_history(customer_id: int) -> bool:
    """Whether the customer has purchases or ledger entries (financial records to keep)."""
    return bool(
        db.session.scalar(sa.select(PointsEntry.id).where(PointsEntry.customer_id == customer_id).limit(1))
        or db.session.scalar(sa.select(Purchase.id).where(Purchase.customer_id == customer_id).limit(1))
    )


def _insert_unless_recorded(values: dict) -> int | None:
    """INSERT ... ON CONFLICT (source, order_ref) DO NOTHING RETURNING id: None if recorded before.

    A repeat leaves the transaction intact (no IntegrityError to roll back), and the common
    case, a new order, costs no look-up first.
    """
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Purchase.__table__)
        .values(values)
        .on_conflict_do_nothing(index_elements=["source", "order_ref"])
        .returning(Purchase.__table__.c.id)
    )
    return db.session.execute(statement).scalar()


def _replay(spec: NewPurchase) -> PurchaseResult:
    """The first result of an order posted again; another purchase under its reference is refused."""
    existing = find_purchase(spec.source, spec.order_ref)
    if existing is None or existing.customer_id != spec.customer_id or existing.amount != spec.amount:
        raise DuplicateOrder(str(_l("This order reference was already used for another purchase.")))
    balance, tier = account_state(existing.customer_id)
    return PurchaseResult(existing, False, balance, tier, spec.member_no)


def record_checked(spec: NewPurchase, now: datetime) -> PurchaseResult:
    """Record a validated purchase (Core statements: the hot path); a repeat is replayed.

    Not audited: record_purchase and the CSV import each record their own event.
    """
    # Imported here: tier rules read purchases, so the tiers module imports this one.
    from models.loyalty.tiers import reevaluate_tier

    purchased_at = spec.purchased_at or now
    balance, tier_code = account_state(spec.customer_id, create=True)
    settings = programme()
    tier = settings.tier(tier_code)
    points = points_for(
        spec.amount,
        tier.multiplier if tier else Decimal(1),
        settings.rule,
        settings.promotions_at(purchased_at),
    )
    if points > 2**31 - 1 - balance:  # the balance and ledger columns are 32-bit integers
        raise LoyaltyError(str(_l("This purchase would earn more points than an account can hold.")))
    values = {
        "source": spec.source,
        "order_ref": spec.order_ref,
        "customer_id": spec.customer_id,
        "amount": spec.amount,
        "currency": spec.currency.upper(),
        "channel": spec.channel,
        "purchased_at": purchased_at,
        "points": points,
        "status": "completed",
        "created_at": now,
    }
    new_id = _insert_unless_recorded(values)
    if new_id is None:  # posted before, or by a concurrent request a moment ago
        return _replay(spec)
    purchase = Purchase(id=new_id, **values)  # a detached copy for the caller to read
    if points:
        entry = post_points(
            Posting(
                spec.customer_id,
                "earn",
                points,
                reason="purchase",
                reference=f"{spec.source}:{spec.order_ref}",
                purchase_id=new_id,
                expires_at=expiry_for(purchased_at),
            ),
            now,
        )
        balance = entry.balance_after
    new_tier = reevaluate_tier(spec.customer_id, now, "purchase", settings.ladder, current=tier_code)
    return PurchaseResult(purchase, True, balance, new_tier, spec.member_no)


def prepare_purchase(spec: NewPurchase, now: datetime) -> None:
    """Normalise a purchase (amount to cents, reference trimmed) and check it; raises LoyaltyError."""
    spec.amount = Decimal(spec.amount)
    spec.order_ref = spec.order_ref.strip()
    validate_purchase(spec, now)
    spec.amount = spec.amount.quantize(MONEY)


def record_purchase(spec: NewPurchase, now: datetime | None = None) -> PurchaseResult:
    """Record a purchase, earn its points, update balance and tier, in the caller's unit of work.

    Posting the same (source, order reference) again changes nothing and returns the first result.
    """
    now = now or utcnow()
    uow = current_uow()
    prepare_purchase(spec, now)
    result = record_checked(spec, now)
    if result.created:
        uow.audit("purchase.create", "purchase", result.purchase.id, AUDITED_FIELDS)
    return result


def refund_purchase(source: str, order_ref: str, now: datetime | None = None) -> Purchase:
    """Refund a purchase: reverse its points (as far as the balance allows). Idempotent."""
    from models.loyalty.tiers import reevaluate_tier  # see record_checked

    now = now or utcnow()
    uow = current_uow()
    purchase = find_purchase(source, order_ref)
    if purchase is None:
        raise LoyaltyError(str(_l("No purchase with that order reference.")))
    if purchase.status == "refunded":
        return purchase
    take_back = min(purchase.points, balance_of(purchase.customer_id))
    if take_back:
        earned = db.session.scalar(
            sa.select(PointsEntry.expires_at).where(
                PointsEntry.purchase_id == purchase.id, PointsEntry.kind == "earn"
            )
        )
        shortfall = purchase.points - take_back
        reason = "refund" + (f" (points already spent: {shortfall})" if shortfall else "")
        # The reversal carries the earned points' expiry, so expiry never counts them twice.
        post_points(
            Posting(
                purchase.customer_id,
                "reverse",
                -take_back,
                reason=reason,
                reference=f"{source}:{order_ref}",
                purchase_id=purchase.id,
                expires_at=earned,
            ),
            now,
        )
    purchase.status, purchase.refunded_at = "refunded", now
    reevaluate_tier(purchase.customer_id, now, "refund")
    uow.audit("purchase.refund", "purchase", purchase.id, ["status", "refunded_at", "points"])
    return purchase
