"""Loyalty rules: earning, idempotent purchases, refunds, the ledger, tiers, rewards and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError

from models import db
from models.loyalty import (
    DuplicateOrder,
    EarningRule,
    InsufficientPoints,
    LoyaltyAccount,
    LoyaltyError,
    NewPurchase,
    PointsEntry,
    Promotion,
    TierChange,
    adjust_points,
    balance_of,
    expire_points,
    expiring_points,
    ledger_sum,
    recompute_tiers,
    record_purchase,
    refund_purchase,
)
from models.rewards import NotEligible, OutOfStock, Redemption, Reward, cancel_redemption, redeem
from tests.factories import make_customer, make_reward

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def buy(customer, ref: str, amount: str, when: datetime = NOW, source: str = "pos"):
    return record_purchase(
        NewPurchase(customer.id, source, ref, Decimal(amount), "CNY", purchased_at=when), now=when
    )


def test_a_purchase_earns_points_by_the_rule(app):
    customer = make_customer()
    result = buy(customer, "A-1", "128.90")
    assert result.created and result.purchase.points == 128 and result.balance == 128
    assert ledger_sum(customer.id) == 128


def test_rounding_minimum_and_promotions(app):
    rule = db.session.scalar(sa.select(EarningRule))
    rule.rounding, rule.minimum_amount, rule.points_per_unit = "nearest", Decimal("10"), Decimal("2")
    db.session.add(
        Promotion(
            name="Double 11",
            multiplier=Decimal("1.5"),
            starts_at=NOW - timedelta(days=1),
            ends_at=NOW + timedelta(days=1),
        )
    )
    db.session.commit()
    customer = make_customer()
    assert buy(customer, "small", "9.99").purchase.points == 0
    assert buy(customer, "promo", "10.25").purchase.points == 31  # 10.25 × 2 × 1.5 = 30.75 → 31
    assert buy(customer, "later", "10.25", NOW + timedelta(days=2)).purchase.points == 21  # 20.5 → 21


def test_posting_the_same_order_again_changes_nothing(app):
    customer = make_customer()
    first = buy(customer, "A-1", "100")
    again = buy(customer, "A-1", "100")
    assert not again.created and again.purchase.id == first.purchase.id and again.balance == 100
    assert db.session.scalar(sa.select(sa.func.count(PointsEntry.id))) == 1
    with pytest.raises(DuplicateOrder):
        buy(customer, "A-1", "250")


def test_the_same_order_reference_from_another_source_is_another_purchase(app):
    customer = make_customer()
    buy(customer, "A-1", "100", source="pos")
    assert buy(customer, "A-1", "100", source="web").created


@pytest.mark.parametrize("amount, currency", [("0", "CNY"), ("-5", "CNY"), ("1.005", "CNY"), ("10", "USD")])
def test_bad_purchases_are_refused_and_change_nothing(app, amount, currency):
    customer = make_customer()
    with pytest.raises(LoyaltyError):
        record_purchase(NewPurchase(customer.id, "pos", "X", Decimal(amount), currency), now=NOW)
    assert balance_of(customer.id) == 0


def test_a_refund_reverses_the_points_once(app):
    customer = make_customer()
    buy(customer, "A-1", "300")
    refund_purchase("pos", "A-1", now=NOW)
    refund_purchase("pos", "A-1", now=NOW)
    assert balance_of(customer.id) == 0 == ledger_sum(customer.id)
    kinds = db.session.scalars(sa.select(PointsEntry.kind).order_by(PointsEntry.id)).all()
    assert kinds == ["earn", "reverse"]


def test_a_refund_after_spending_takes_back_only_what_is_left(app):
    customer = make_customer()
    buy(customer, "A-1", "300")
    adjust_points(customer.id, -250, "goodwill test", "manager@test", now=NOW)
    refund_purchase("pos", "A-1", now=NOW)
    assert balance_of(customer.id) == 0 == ledger_sum(customer.id)


def test_the_database_refuses_a_negative_balance_and_ledger_changes(app):
    customer = make_customer()
    buy(customer, "A-1", "50")
    with pytest.raises(DatabaseError):
        db.session.execute(sa.text("UPDATE loyalty_account SET balance = -1"))
    db.session.rollback()
    for statement in ("UPDATE points_entry SET points = 5000", "DELETE FROM points_entry"):
        with pytest.raises(DatabaseError):
            db.session.execute(sa.text(statement))
        db.session.rollback()
    assert balance_of(customer.id) == 50


def test_adjustments_need_a_reason_and_cannot_overdraw(app):
    customer = make_customer()
    with pytest.raises(LoyaltyError):
        adjust_points(customer.id, 10, "  ", "manager@test")
    with pytest.raises(InsufficientPoints):
        adjust_points(customer.id, -1, "oops", "manager@test")
    db.session.rollback()
    entry = adjust_points(customer.id, 40, "apology for late parcel", "manager@test", now=NOW)
    db.session.commit()
    assert entry.actor == "manager@test" and entry.balance_after == 40


def test_tiers_follow_twelve_month_spend_with_history(app):
    customer = make_customer()
    assert buy(customer, "A-1", "1500").tier == "member"
    assert buy(customer, "A-2", "600").tier == "silver"
    # Silver earns ×1.25 from the next purchase on.
    assert buy(customer, "A-3", "100").purchase.points == 125
    later = NOW + timedelta(days=400)
    assert recompute_tiers(later) == 1
    account = db.session.get(LoyaltyAccount, customer.id)
    assert account.tier_code == "member"
    history = db.session.scalars(sa.select(TierChange.to_tier).order_by(TierChange.id)).all()
    assert history == ["silver", "member"]


def reward(**fields) -> Reward:
    """Two tote bags, unless told otherwise."""
    return make_reward(**({"stock": 2} | fields))


def test_redeeming_issues_a_unique_coupon_and_takes_stock(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    bag = reward()
    first, second = redeem(customer.id, bag.id, now=NOW), redeem(customer.id, bag.id, now=NOW)
    assert first.coupon_code != second.coupon_code and len(first.coupon_code) == 19
    assert balance_of(customer.id) == 300
    with pytest.raises(OutOfStock):
        redeem(customer.id, bag.id, now=NOW)
    assert balance_of(customer.id) == 300 == ledger_sum(customer.id)


def test_redeeming_without_enough_points_changes_nothing(app):
    customer = make_customer()
    buy(customer, "A-1", "50")
    bag = reward()
    with pytest.raises(InsufficientPoints):
        redeem(customer.id, bag.id, now=NOW)
    db.session.expire_all()
    assert db.session.get(Reward, bag.id).stock == 2
    assert db.session.scalar(sa.select(sa.func.count(Redemption.id))) == 0


def test_tier_only_and_out_of_window_rewards_are_refused(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    with pytest.raises(NotEligible):
        redeem(customer.id, reward(min_tier="gold").id, now=NOW)
    with pytest.raises(NotEligible):
        redeem(customer.id, reward(ends_at=NOW - timedelta(days=1)).id, now=NOW)


def test_cancelling_a_coupon_refunds_points_and_stock(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    bag = reward(stock=1)
    coupon = redeem(customer.id, bag.id, now=NOW)
    cancel_redemption(coupon.id, now=NOW)
    db.session.expire_all()
    assert balance_of(customer.id) == 500 and db.session.get(Reward, bag.id).stock == 1
    with pytest.raises(LoyaltyError):
        cancel_redemption(coupon.id, now=NOW)


def test_points_expire_oldest_first(app, monkeypatch):
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", NOW - timedelta(days=400))
    buy(customer, "new", "50", NOW - timedelta(days=30))
    adjust_points(customer.id, -30, "spent at the till", "agent", now=NOW - timedelta(days=20))
    # 100 old points, 30 of them spent (oldest first): 70 lapse; the 50 new ones stay.
    lines = expiring_points(customer.id)
    assert [line.points for line in lines] == [70, 50]
    assert expire_points(NOW) == {customer.id: 70}
    assert expire_points(NOW) == {}
    assert balance_of(customer.id) == 50 == ledger_sum(customer.id)
    assert [line.points for line in expiring_points(customer.id)] == [50]


def test_expiry_does_not_count_refunded_points(app):
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", NOW - timedelta(days=400))
    refund_purchase("pos", "old", now=NOW - timedelta(days=300))
    assert expire_points(NOW) == {}
    assert balance_of(customer.id) == 0
