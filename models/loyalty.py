"""Loyalty: the points ledger and balances, purchases, earning rules, tiers and expiry.

Every change to a balance is one atomic `UPDATE ... WHERE balance + delta >= 0` plus one
ledger entry, in the caller's transaction; the database refuses a negative balance too.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models import BilingualName, UTCDateTime, begin_write, commit_keeping_state, db, one_of, utcnow

ENTRY_KINDS = ("earn", "redeem", "adjust", "expire", "reverse")
ENTRY_LABELS = {
    "earn": _l("Earned"),
    "redeem": _l("Redeemed"),
    "adjust": _l("Adjusted"),
    "expire": _l("Expired"),
    "reverse": _l("Reversed"),
}
# Where a purchase was made; one list for the panel, CSV imports and the API.
PURCHASE_CHANNELS = {
    "store": _l("In store"),
    "online": _l("Online shop"),
    "app": _l("App"),
    "phone": _l("Phone"),
    "other": _l("Other"),
}
# Reasons the system writes on its own, shown in the reader's language (free text stays as typed).
REASON_LABELS = {
    "purchase": _l("Purchase"),
    "refund": _l("Refund"),
    "points expired": _l("Points expired"),
    "coupon cancelled": _l("Coupon cancelled"),
}
ROUNDING = {"down": ROUND_DOWN, "nearest": ROUND_HALF_UP, "up": ROUND_UP}
MONEY = Decimal("0.01")
BASE_TIER = "member"  # every customer's tier until their spend earns a higher one


class LoyaltyError(ValueError):
    """A loyalty operation the rules refuse. `code` names the reason for API clients."""

    code = "invalid"
    status = 422


class InsufficientPoints(LoyaltyError):
    code, status = "insufficient_points", 409


class UnknownCustomer(LoyaltyError):
    code, status = "unknown_customer", 404


class DuplicateOrder(LoyaltyError):
    code, status = "order_conflict", 409


class Tier(BilingualName, db.Model):
    """A membership tier, reached by spend over the last twelve months."""

    __tablename__ = "tier"
    __table_args__ = (
        sa.CheckConstraint("threshold >= 0", name="threshold"),
        sa.CheckConstraint("multiplier > 0", name="multiplier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name_en: Mapped[str] = mapped_column(sa.String(64))
    name_zh: Mapped[str] = mapped_column(sa.String(64))
    threshold: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal(0))
    multiplier: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal(1))


class LoyaltyAccount(db.Model):
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


class PointsEntry(db.Model):
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


class Purchase(db.Model):
    """A purchase that earns points; its order reference is unique per source (idempotency)."""

    __tablename__ = "purchase"
    __table_args__ = (
        sa.UniqueConstraint("source", "order_ref", name="uq_purchase_source_order_ref"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        one_of("status", ("completed", "refunded"), "status"),
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


class EarningRule(db.Model):
    """How purchases earn points (one row, edited by admins)."""

    __tablename__ = "earning_rule"
    __table_args__ = (
        sa.CheckConstraint("points_per_unit >= 0", name="points_per_unit"),
        sa.CheckConstraint("minimum_amount >= 0", name="minimum_amount"),
        one_of("rounding", tuple(ROUNDING), "rounding"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    points_per_unit: Mapped[Decimal] = mapped_column(sa.Numeric(8, 2), default=Decimal(1))
    rounding: Mapped[str] = mapped_column(sa.String(8), default="down")
    minimum_amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal(0))

    def __str__(self) -> str:
        return f"{self.points_per_unit} / unit, {self.rounding}"


class Promotion(db.Model):
    """A points multiplier that applies to purchases made inside its window."""

    __tablename__ = "promotion"
    __table_args__ = (
        sa.CheckConstraint("multiplier > 0", name="multiplier"),
        sa.CheckConstraint("ends_at > starts_at", name="window"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    multiplier: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(default=True)

    def __str__(self) -> str:
        return f"{self.name} ×{self.multiplier}"


class TierChange(db.Model):
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


# Accounts and the ledger ------------------------------------------------------------


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


@dataclass
class Posting:
    """One change to a balance, described for the ledger."""

    customer_id: int
    kind: str
    points: int
    reason: str = ""
    actor: str = "system"
    reference: str | None = None
    purchase_id: int | None = None
    redemption_id: int | None = None
    expires_at: datetime | None = None


def post_points(posting: Posting, now: datetime | None = None) -> PointsEntry:
    """Apply a posting to the balance atomically and write its ledger entry.

    Raises InsufficientPoints (and changes nothing) when the balance would go negative.
    """
    if posting.points == 0:
        raise LoyaltyError(str(_l("A posting must change the balance.")))
    table = LoyaltyAccount.__table__
    now = now or utcnow()
    row = db.session.execute(
        sa.update(table)
        .where(table.c.customer_id == posting.customer_id, table.c.balance + posting.points >= 0)
        .values(balance=table.c.balance + posting.points, updated_at=now)
        .returning(table.c.balance, table.c.tier_code)
    ).first()
    if row is None:
        raise InsufficientPoints(str(_l("Not enough points.")))
    values = {
        "customer_id": posting.customer_id,
        "kind": posting.kind,
        "points": posting.points,
        "balance_after": row[0],
        "reason": posting.reason[:500],
        "actor": posting.actor[:254],
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
    loaded = db.session.identity_map.get(db.session.identity_key(LoyaltyAccount, posting.customer_id))
    if loaded is not None:  # the UPDATE above bypassed the ORM: tell the loaded account
        sa.orm.attributes.set_committed_value(loaded, "balance", row[0])
    entry = PointsEntry(id=new_id, **values)  # a detached copy for the caller to read
    entry.tier_code = row[1]
    return entry


def has_loyalty_history(customer_id: int) -> bool:
    """Whether the customer has purchases or ledger entries (financial records to keep)."""
    return bool(
        db.session.scalar(sa.select(PointsEntry.id).where(PointsEntry.customer_id == customer_id).limit(1))
        or db.session.scalar(sa.select(Purchase.id).where(Purchase.customer_id == customer_id).limit(1))
    )


def balance_of(customer_id: int) -> int:
    """The customer's current balance (0 without an account)."""
    return (
        db.session.scalar(sa.select(LoyaltyAccount.balance).where(LoyaltyAccount.customer_id == customer_id))
        or 0
    )


def ledger_sum(customer_id: int) -> int:
    """The sum of the customer's ledger entries (always equal to the balance)."""
    return db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0)).where(
            PointsEntry.customer_id == customer_id
        )
    )


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


def adjust_points(customer_id: int, points: int, reason: str, actor: str, now: datetime | None = None):
    """A manual adjustment (managers only, reason required); credits lapse like earned points."""
    if not reason or not reason.strip():
        raise LoyaltyError(str(_l("An adjustment needs a reason.")))
    begin_write()
    now = now or utcnow()
    ensure_account(customer_id)
    return post_points(
        Posting(
            customer_id,
            "adjust",
            points,
            reason=reason.strip(),
            actor=actor,
            expires_at=expiry_for(now) if points > 0 else None,
        ),
        now,
    )


# Earning ----------------------------------------------------------------------------


def current_rule() -> EarningRule:
    """The earning rule (the defaults if none is stored)."""
    return db.session.scalar(sa.select(EarningRule).limit(1)) or EarningRule(
        points_per_unit=Decimal(1), rounding="down", minimum_amount=Decimal(0)
    )


def tiers() -> list[Tier]:
    """Tiers from the lowest threshold to the highest."""
    return list(db.session.scalars(sa.select(Tier).order_by(Tier.threshold)))


def tier_for_spend(spend: Decimal, ladder: list[Tier]) -> Tier | None:
    """The highest tier whose threshold the spend reaches."""
    reached = [tier for tier in ladder if spend >= tier.threshold]
    return reached[-1] if reached else None


def points_for(amount: Decimal, multiplier: Decimal, rule: EarningRule, promotions: list[Promotion]) -> int:
    """Points a purchase earns: amount × rate × tier multiplier × promotions, rounded by rule."""
    if amount < rule.minimum_amount:
        return 0
    value = amount * rule.points_per_unit * multiplier
    for promotion in promotions:
        value *= promotion.multiplier
    return int(value.quantize(Decimal(1), rounding=ROUNDING[rule.rounding]))


@dataclass(frozen=True)
class Programme:
    """The earning rule, tiers and promotions, read together and detached from the session."""

    rule: EarningRule
    ladder: list[Tier]
    promotions: list[Promotion]
    read_at: float

    def promotions_at(self, moment: datetime) -> list[Promotion]:
        return [p for p in self.promotions if p.active and p.starts_at <= moment < p.ends_at]

    def tier(self, code: str) -> Tier | None:
        return next((t for t in self.ladder if t.code == code), None)


PROGRAMME_CACHE = "patron.loyalty_programme"


def programme() -> Programme:
    """The loyalty programme's settings, re-read at most every LOYALTY_SETTINGS_TTL seconds.

    Every purchase needs them; reading them once per few seconds instead of three queries a
    purchase matters under load. A change made in this process takes effect at once (the
    cache is dropped on flush); other workers see it within the TTL.
    """
    ttl = float(current_app.config.get("LOYALTY_SETTINGS_TTL", 5))
    cached = current_app.extensions.get(PROGRAMME_CACHE)
    if cached is not None and time.monotonic() - cached.read_at < ttl:
        return cached
    rule, ladder = current_rule(), tiers()
    promotions = list(db.session.scalars(sa.select(Promotion)))
    for obj in [rule, *ladder, *promotions]:
        if obj in db.session:
            db.session.expunge(obj)  # detached: a later commit cannot expire them
    fresh = Programme(rule, ladder, promotions, time.monotonic())
    current_app.extensions[PROGRAMME_CACHE] = fresh
    return fresh


@sa.event.listens_for(Session, "after_flush")
def _forget_programme(session: Session, _context) -> None:
    """Settings changed in this process apply to the very next purchase."""
    changed = list(session.new) + list(session.dirty) + list(session.deleted)
    if any(isinstance(obj, (EarningRule, Tier, Promotion)) for obj in changed) and has_app_context():
        current_app.extensions.pop(PROGRAMME_CACHE, None)


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


def validate_purchase(spec: NewPurchase) -> None:
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
    if spec.member_no is None:
        spec.member_no = member_no_of(spec.customer_id)
        if spec.member_no is None:
            raise UnknownCustomer(str(_l("No such customer.")))


def _existing(source: str, order_ref: str) -> Purchase | None:
    return db.session.scalar(
        sa.select(Purchase).where(Purchase.source == source, Purchase.order_ref == order_ref)
    )


def member_no_of(customer_id: int) -> str | None:
    """A customer's member number, None if there is no such customer."""
    from models.customer import Customer

    return db.session.scalar(sa.select(Customer.member_no).where(Customer.id == customer_id))


def account_state(customer_id: int, create: bool = False) -> tuple[int, str]:
    """A member's (balance, tier code); without an account, 0 points in the base tier.

    With `create`, a missing account is opened first (inside the caller's write transaction).
    """
    table = LoyaltyAccount.__table__
    query = sa.select(table.c.balance, table.c.tier_code).where(table.c.customer_id == customer_id)
    row = db.session.execute(query).first()
    if row is None and create:
        ensure_account(customer_id)
        row = db.session.execute(query).first()
    return (row[0], row[1]) if row else (0, BASE_TIER)


def _replay(existing: Purchase, spec: NewPurchase) -> PurchaseResult:
    if existing.customer_id != spec.customer_id or existing.amount != spec.amount:
        raise DuplicateOrder(str(_l("This order reference was already used for another purchase.")))
    balance, tier = account_state(existing.customer_id)
    return PurchaseResult(existing, False, balance, tier, spec.member_no)


def record_purchase(spec: NewPurchase, actor: str = "system", now: datetime | None = None) -> PurchaseResult:
    """Record a purchase, earn its points, update balance and tier: one transaction, committed.

    Posting the same (source, order reference) again changes nothing and returns the first result.
    """
    now = now or utcnow()
    spec.amount = Decimal(spec.amount)
    validate_purchase(spec)
    spec.amount = spec.amount.quantize(MONEY)
    begin_write()
    try:
        # Insert first: the unique (source, order reference) constraint spots a repeat, so
        # the common case (a new order) costs no extra look-up.
        result = _record_new(spec, actor, now)
        commit_keeping_state()
        return result
    except IntegrityError:
        db.session.rollback()  # posted before, or by a concurrent request a moment ago
        existing = _existing(spec.source, spec.order_ref)
        if existing is None:
            raise
        result = _replay(existing, spec)
        commit_keeping_state()
        return result


def _record_new(spec: NewPurchase, actor: str, now: datetime) -> PurchaseResult:
    """Insert the purchase, post its points and check the tier (Core statements: the hot path)."""
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
        "order_ref": spec.order_ref.strip(),
        "customer_id": spec.customer_id,
        "amount": spec.amount,
        "currency": spec.currency.upper(),
        "channel": spec.channel,
        "purchased_at": purchased_at,
        "points": points,
        "status": "completed",
        "created_at": now,
    }
    new_id = db.session.execute(sa.insert(Purchase.__table__).values(values).returning(Purchase.id)).scalar()
    purchase = Purchase(id=new_id, **values)  # a detached copy for the caller to read
    if points:
        entry = post_points(
            Posting(
                spec.customer_id,
                "earn",
                points,
                reason="purchase",
                actor=actor,
                reference=f"{spec.source}:{spec.order_ref}",
                purchase_id=new_id,
                expires_at=expiry_for(purchased_at),
            ),
            now,
        )
        balance = entry.balance_after
    new_tier = reevaluate_tier(spec.customer_id, now, "purchase", settings.ladder, current=tier_code)
    return PurchaseResult(purchase, True, balance, new_tier, spec.member_no)


def refund_purchase(
    source: str, order_ref: str, actor: str = "system", now: datetime | None = None
) -> Purchase:
    """Refund a purchase: reverse its points (as far as the balance allows). Idempotent; committed."""
    now = now or utcnow()
    begin_write()
    purchase = _existing(source, order_ref)
    if purchase is None:
        raise LoyaltyError(str(_l("No purchase with that order reference.")))
    if purchase.status == "refunded":
        db.session.commit()
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
                actor=actor,
                reference=f"{source}:{order_ref}",
                purchase_id=purchase.id,
                expires_at=earned,
            ),
            now,
        )
    purchase.status, purchase.refunded_at = "refunded", now
    reevaluate_tier(purchase.customer_id, now, "refund")
    db.session.commit()
    return purchase


# Tiers ------------------------------------------------------------------------------


def spend_last_year(customer_id: int, now: datetime) -> Decimal:
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
    """Put the customer in the tier their rolling 12-month spend earns; returns the tier code."""
    if current is None:
        current = account_state(customer_id, create=True)[1]
    spend = Decimal(spend_last_year(customer_id, now))
    tier = tier_for_spend(spend, ladder if ladder is not None else tiers())
    if tier is None or tier.code == current:
        return current
    _move_tier(db.session.get(LoyaltyAccount, customer_id), tier, spend, reason, now)
    return tier.code


def recompute_tiers(now: datetime | None = None) -> int:
    """Re-evaluate every account's tier from one grouped query; returns how many moved."""
    now = now or utcnow()
    begin_write()
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
    db.session.commit()
    return moved


# Expiry -----------------------------------------------------------------------------


def expire_points(now: datetime | None = None) -> dict[int, int]:
    """Expire lapsed points, oldest first, as ledger entries; returns {customer_id: points}.

    Under first-in-first-out spending, what must have lapsed by `now` is the credit that
    lapsed by now minus everything spent or expired so far (never less than zero).
    """
    now = now or utcnow()
    begin_write()
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
    db.session.commit()
    return expired


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
    return list(
        db.session.scalars(
            sa.select(PointsEntry)
            .where(PointsEntry.customer_id == customer_id)
            .order_by(PointsEntry.id.desc())
            .limit(limit)
        )
    )
