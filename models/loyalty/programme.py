"""The loyalty programme's settings: the earning rule, tiers, promotions, and their cache.

Also the errors every loyalty rule raises, and the rule that a dated window (a promotion, a
reward's validity) ends after it starts, checked here and held by a database CHECK.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

import sqlalchemy as sa
from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, Session, mapped_column

from models import BilingualName, Model, UTCDateTime, db, one_of

ROUNDING = {"down": ROUND_DOWN, "nearest": ROUND_HALF_UP, "up": ROUND_UP}
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


def check_window(starts_at: datetime | None, ends_at: datetime | None) -> None:
    """Refuse a window whose end does not come after its start (an open end is fine)."""
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise LoyaltyError(str(_l("The end must come after the start.")))


class DatedWindow:
    """Mixin for rows valid from `starts_at` until `ends_at`; checked before every flush."""

    def check_window(self) -> None:
        """Refuse this row's window if it ends before it starts."""
        check_window(getattr(self, "starts_at", None), getattr(self, "ends_at", None))


@sa.event.listens_for(Session, "before_flush")
def _windows_end_after_they_start(session: Session, _context, _instances) -> None:
    """Whoever writes a promotion or reward (a screen, a command, the demo), the window holds."""
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, DatedWindow):
            obj.check_window()


class Tier(BilingualName, Model):
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


class EarningRule(Model):
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


class Promotion(DatedWindow, Model):
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
