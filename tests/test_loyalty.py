"""Loyalty rules: earning, idempotent purchases, refunds, the ledger, tiers, rewards and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError, IntegrityError

from models import db, utcnow
from models.audit import AuditEvent
from models.loyalty.imports import check_import, record_import
from models.loyalty.ledger import (
    LoyaltyAccount,
    PointsEntry,
    adjust_points,
    balance_of,
    expire_points,
    expiring_points,
    ledger_sum,
)
from models.loyalty.programme import (
    DuplicateOrder,
    EarningRule,
    InsufficientPoints,
    LoyaltyError,
    Promotion,
)
from models.loyalty.purchases import NewPurchase, Purchase, record_purchase, refund_purchase
from models.loyalty.rewards import (
    NotEligible,
    OutOfStock,
    Redemption,
    Reward,
    cancel_redemption,
    mark_used,
    redeem,
)
from models.loyalty.tiers import TierChange, recompute_tiers
from models.uow import SYSTEM, Actor, WriteOutsideUnitOfWork, unit_of_work
from tests.factories import audit_events, failing_after_insert, make_customer, make_reward

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def write(function, *args, **kwargs):
    """Call a domain function in a unit of work of its own, as the system."""
    with unit_of_work(SYSTEM, keep_state=True):
        return function(*args, **kwargs)


def buy(customer, ref: str, amount: str, when: datetime = NOW, source: str = "pos"):
    spec = NewPurchase(customer.id, source, ref, Decimal(amount), "CNY", purchased_at=when)
    return write(record_purchase, spec, now=when)


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_a_purchase_earns_points_by_the_rule(app):
    customer = make_customer()
    result = buy(customer, "A-1", "128.90")
    assert result.created and result.purchase.points == 128 and result.balance == 128
    assert ledger_sum(customer.id) == 128


def test_rounding_minimum_and_promotions(app):
    with unit_of_work(SYSTEM) as uow:
        rule = db.session.scalar(sa.select(EarningRule))
        rule.rounding, rule.minimum_amount, rule.points_per_unit = "nearest", Decimal("10"), Decimal("2")
        uow.add(
            Promotion(
                name="Double 11",
                multiplier=Decimal("1.5"),
                starts_at=NOW - timedelta(days=1),
                ends_at=NOW + timedelta(days=1),
            )
        )
    customer = make_customer()
    assert buy(customer, "small", "9.99").purchase.points == 0
    assert buy(customer, "promo", "10.25").purchase.points == 31  # 10.25 × 2 × 1.5 = 30.75 → 31
    assert buy(customer, "later", "10.25", NOW + timedelta(days=2)).purchase.points == 21  # 20.5 → 21


def test_posting_the_same_order_again_changes_nothing(app):
    customer = make_customer()
    first = buy(customer, "A-1", "100")
    again = buy(customer, "A-1", "100")
    assert not again.created and again.purchase.id == first.purchase.id and again.balance == 100
    assert count(PointsEntry) == 1
    with pytest.raises(DuplicateOrder):
        buy(customer, "A-1", "250")


def test_a_repeated_order_leaves_the_rest_of_the_unit_of_work_intact(app):
    """Does a repeat, spotted by the insert itself, keep what the same unit of work did before it?"""
    customer = make_customer()
    with unit_of_work(SYSTEM):
        first = record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("100"), "CNY"), now=NOW)
        again = record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("100"), "CNY"), now=NOW)
        other = record_purchase(NewPurchase(customer.id, "pos", "A-2", Decimal("50"), "CNY"), now=NOW)
    assert (first.created, again.created, other.created) == (True, False, True)
    assert db.session.scalars(sa.select(Purchase.order_ref).order_by(Purchase.id)).all() == ["A-1", "A-2"]
    assert balance_of(customer.id) == 150 == ledger_sum(customer.id)
    assert len(audit_events("purchase.create")) == 2


def test_the_same_order_reference_from_another_source_is_another_purchase(app):
    customer = make_customer()
    buy(customer, "A-1", "100", source="pos")
    assert buy(customer, "A-1", "100", source="web").created


@pytest.mark.parametrize("amount, currency", [("0", "CNY"), ("-5", "CNY"), ("1.005", "CNY"), ("10", "USD")])
def test_bad_purchases_are_refused_and_change_nothing(app, amount, currency):
    customer = make_customer()
    with pytest.raises(LoyaltyError):
        write(record_purchase, NewPurchase(customer.id, "pos", "X", Decimal(amount), currency), now=NOW)
    assert balance_of(customer.id) == 0 and count(Purchase) == 0


def test_a_purchase_dated_in_the_future_is_refused(app):
    """Does the model refuse a purchase dated after now, whichever door sends it?"""
    customer = make_customer()
    spec = NewPurchase(customer.id, "pos", "X", Decimal("10"), "CNY", purchased_at=NOW + timedelta(minutes=1))
    with pytest.raises(LoyaltyError, match="cannot be in the future"):
        write(record_purchase, spec, now=NOW)
    assert count(Purchase) == 0


def test_a_csv_import_refuses_a_purchase_dated_in_the_future(app):
    """Is a future-dated row reported with its line, and nothing of the file recorded?"""
    make_customer(member_no="M-1")
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    text = (
        f"order_ref,customer,amount,purchased_at\nO-1,M-1,10.00,2026-01-05T10:00:00\nO-2,M-1,20,{tomorrow}\n"
    )
    checked = check_import(text, "csv", "CNY")
    assert [(e.line, "cannot be in the future" in e.message) for e in checked.report.errors] == [(3, True)]
    with unit_of_work(SYSTEM):
        report = record_import(checked)
    assert not report.ok and report.recorded == 0
    assert count(Purchase) == 0 and audit_events("purchase.import") == []


def test_a_csv_import_records_every_row_with_one_audit_event(app):
    make_customer(member_no="M-1")
    checked = check_import("order_ref,customer,amount\nO-1,M-1,10.00\nO-2,M-1,20\n", "csv", "CNY")
    with unit_of_work(Actor.system("cli")):
        report = record_import(checked)
    assert (report.recorded, report.skipped_existing) == (2, 0)
    assert [(e.actor, e.detail) for e in audit_events("purchase.import")] == [("cli", "rows=2")]
    assert audit_events("purchase.create") == []


def test_a_refund_reverses_the_points_once(app):
    customer = make_customer()
    buy(customer, "A-1", "300")
    write(refund_purchase, "pos", "A-1", now=NOW)
    write(refund_purchase, "pos", "A-1", now=NOW)
    assert balance_of(customer.id) == 0 == ledger_sum(customer.id)
    kinds = db.session.scalars(sa.select(PointsEntry.kind).order_by(PointsEntry.id)).all()
    assert kinds == ["earn", "reverse"]
    assert len(audit_events("purchase.refund")) == 1


def test_a_refund_after_spending_takes_back_only_what_is_left(app):
    customer = make_customer()
    buy(customer, "A-1", "300")
    write(adjust_points, customer.id, -250, "goodwill test", now=NOW)
    write(refund_purchase, "pos", "A-1", now=NOW)
    assert balance_of(customer.id) == 0 == ledger_sum(customer.id)


def test_the_database_refuses_a_negative_balance_and_ledger_changes(app):
    customer = make_customer()
    buy(customer, "A-1", "50")
    for statement in (
        "UPDATE loyalty_account SET balance = -1",
        "UPDATE points_entry SET points = 5000",
        "DELETE FROM points_entry",
    ):
        with pytest.raises(DatabaseError), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert balance_of(customer.id) == 50


def test_adjustments_need_a_reason_and_cannot_overdraw(app):
    customer = make_customer()
    with pytest.raises(LoyaltyError):
        write(adjust_points, customer.id, 10, "  ")
    with pytest.raises(InsufficientPoints):
        write(adjust_points, customer.id, -1, "oops")
    entry = write(adjust_points, customer.id, 40, "apology for late parcel", now=NOW)
    assert entry.balance_after == 40
    assert [(e.object_id, e.fields) for e in audit_events("points.adjust")] == [
        (str(customer.id), "points,reason")
    ]


def test_the_ledger_entry_names_the_actor_of_the_unit_of_work(app):
    """Is a ledger entry's `actor` the unit of work's actor, whoever made the change?"""
    customer = make_customer()
    with unit_of_work(Actor.system("job:test")):
        adjust_points(customer.id, 40, "welcome bonus")
    assert db.session.scalars(sa.select(PointsEntry.actor)).all() == ["job:test"]
    assert [e.actor for e in audit_events("points.adjust")] == ["job:test"]


def test_a_loyalty_change_outside_a_unit_of_work_is_refused(app):
    customer = make_customer()
    with pytest.raises(WriteOutsideUnitOfWork):
        record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("100"), "CNY"))
    db.session.rollback()
    assert count(Purchase) == 0


def test_a_failure_after_a_purchase_leaves_neither_it_nor_its_audit_event(app):
    """If a later step of the same unit of work fails, are the purchase, its points and its event gone?"""
    customer = make_customer()
    with pytest.raises(RuntimeError, match="later step"):
        with unit_of_work(SYSTEM):
            record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("100"), "CNY"), now=NOW)
            raise RuntimeError("a later step failed")
    assert count(Purchase) == 0 and count(PointsEntry) == 0
    assert audit_events("purchase.create") == []
    assert balance_of(customer.id) == 0


def test_each_loyalty_change_leaves_its_audit_event(app):
    """Do purchases, refunds, redemptions and their coupons each record an event naming fields?"""
    customer = make_customer()
    bag = reward()
    with unit_of_work(Actor.system("till")):
        bought = record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("500"), "CNY"), now=NOW)
        first = redeem(customer.id, bag.id, now=NOW).redemption
        second = redeem(customer.id, bag.id, now=NOW).redemption
        mark_used(db.session.get(Redemption, first.id), now=NOW)
        cancel_redemption(second.id, now=NOW)
        refund_purchase("pos", "A-1", now=NOW)
    events = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.action, e.object_type, e.object_id, e.actor) for e in events] == [
        ("purchase.create", "purchase", str(bought.purchase.id), "till"),
        ("redemption.create", "redemption", str(first.id), "till"),
        ("redemption.create", "redemption", str(second.id), "till"),
        ("redemption.use", "redemption", str(first.id), "till"),
        ("redemption.cancel", "redemption", str(second.id), "till"),
        ("purchase.refund", "purchase", str(bought.purchase.id), "till"),
    ]
    assert events[0].fields == "amount,channel,customer_id,order_ref,points,purchased_at"
    assert all("500" not in e.fields + e.detail for e in events)  # fields are named, values never


def test_tiers_follow_twelve_month_spend_with_history(app):
    customer = make_customer()
    assert buy(customer, "A-1", "1500").tier == "member"
    assert buy(customer, "A-2", "600").tier == "silver"
    # Silver earns ×1.25 from the next purchase on.
    assert buy(customer, "A-3", "100").purchase.points == 125
    later = NOW + timedelta(days=400)
    assert write(recompute_tiers, later) == 1
    assert write(recompute_tiers, later) == 0
    account = db.session.get(LoyaltyAccount, customer.id)
    assert account.tier_code == "member"
    history = db.session.scalars(sa.select(TierChange.to_tier).order_by(TierChange.id)).all()
    assert history == ["silver", "member"]
    assert [(e.actor, e.detail) for e in audit_events("tier.recompute")] == [("system", "moved=1")]


def reward(**fields) -> Reward:
    """Two tote bags, unless told otherwise."""
    return make_reward(**({"stock": 2} | fields))


def test_redeeming_issues_a_unique_coupon_and_takes_stock(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    bag = reward()
    first = write(redeem, customer.id, bag.id, now=NOW)
    second = write(redeem, customer.id, bag.id, now=NOW)
    assert first.redemption.coupon_code != second.redemption.coupon_code
    assert len(first.redemption.coupon_code) == 19
    assert (first.balance, second.balance, second.tier) == (400, 300, "member")
    with pytest.raises(OutOfStock):
        write(redeem, customer.id, bag.id, now=NOW)
    assert balance_of(customer.id) == 300 == ledger_sum(customer.id)


def test_redeeming_without_enough_points_changes_nothing(app):
    customer = make_customer()
    buy(customer, "A-1", "50")
    bag = reward()
    with pytest.raises(InsufficientPoints):
        write(redeem, customer.id, bag.id, now=NOW)
    db.session.expire_all()
    assert db.session.get(Reward, bag.id).stock == 2
    assert count(Redemption) == 0


def test_a_refused_redemption_changes_nothing_even_if_the_caller_goes_on(app):
    """Can a caller catch OutOfStock or InsufficientPoints and commit the rest, with nothing taken?"""
    customer = make_customer()
    buy(customer, "A-1", "150")
    gone, dear = reward(stock=0), reward(points_cost=1000)
    with unit_of_work(SYSTEM):
        for reward_id, refusal in ((gone.id, OutOfStock), (dear.id, InsufficientPoints)):
            with pytest.raises(refusal):
                redeem(customer.id, reward_id, now=NOW)
    db.session.expire_all()
    assert balance_of(customer.id) == 150 == ledger_sum(customer.id)
    assert (db.session.get(Reward, gone.id).stock, db.session.get(Reward, dear.id).stock) == (0, 2)
    assert count(Redemption) == 0 and audit_events("redemption.create") == []


def test_tier_only_and_out_of_window_rewards_are_refused(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    with pytest.raises(NotEligible):
        write(redeem, customer.id, reward(min_tier="gold").id, now=NOW)
    with pytest.raises(NotEligible):
        write(redeem, customer.id, reward(ends_at=NOW - timedelta(days=1)).id, now=NOW)


def test_cancelling_a_coupon_refunds_points_and_stock(app):
    customer = make_customer()
    buy(customer, "A-1", "500")
    bag = reward(stock=1)
    coupon = write(redeem, customer.id, bag.id, now=NOW).redemption
    write(cancel_redemption, coupon.id, now=NOW)
    db.session.expire_all()
    assert balance_of(customer.id) == 500 and db.session.get(Reward, bag.id).stock == 1
    with pytest.raises(LoyaltyError):
        write(cancel_redemption, coupon.id, now=NOW)


@pytest.mark.parametrize("model", ["reward", "promotion"])
def test_a_window_ending_before_it_starts_is_refused_by_the_model(app, model):
    """Does the model refuse a reward or promotion that ends before (or when) it starts?"""
    row = (
        Reward(name_en="Mug", name_zh="杯子", points_cost=10, starts_at=NOW, ends_at=NOW)
        if model == "reward"
        else Promotion(name="Late", multiplier=Decimal(2), starts_at=NOW, ends_at=NOW - timedelta(days=1))
    )
    with pytest.raises(LoyaltyError, match="The end must come after the start."):
        with unit_of_work(SYSTEM) as uow:
            uow.add(row)
    assert count(Reward) == count(Promotion) == 0


@pytest.mark.parametrize("table", ["reward", "promotion"])
def test_a_window_ending_before_it_starts_is_refused_by_the_database(app, table):
    """Does a CHECK refuse such a window even when the models are bypassed?"""
    values = {"starts_at": NOW, "ends_at": NOW - timedelta(hours=1)}
    if table == "reward":
        values |= {"name_en": "Mug", "name_zh": "杯子", "description": "", "points_cost": 10, "active": True}
        target = Reward.__table__
    else:
        values |= {"name": "Late", "multiplier": Decimal(2), "active": True}
        target = Promotion.__table__
    with pytest.raises(IntegrityError, match=f"ck_{table}_window|CHECK"), db.engine.begin() as conn:
        conn.execute(sa.insert(target).values(values))
    assert count(target) == 0


def test_a_reward_may_be_open_at_either_end(app):
    open_start = make_reward(ends_at=NOW)
    open_end = make_reward(starts_at=NOW)
    assert (open_start.starts_at, open_end.ends_at) == (None, None)


def test_points_expire_oldest_first(app):
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", NOW - timedelta(days=400))
    buy(customer, "new", "50", NOW - timedelta(days=30))
    write(adjust_points, customer.id, -30, "spent at the till", now=NOW - timedelta(days=20))
    # 100 old points, 30 of them spent (oldest first): 70 lapse; the 50 new ones stay.
    lines = expiring_points(customer.id)
    assert [line.points for line in lines] == [70, 50]
    assert write(expire_points, NOW) == {customer.id: 70}
    assert write(expire_points, NOW) == {}
    assert balance_of(customer.id) == 50 == ledger_sum(customer.id)
    assert [line.points for line in expiring_points(customer.id)] == [50]
    assert [e.detail for e in audit_events("points.expire")] == ["customers=1 points=70"]


def test_expiry_does_not_count_refunded_points(app):
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", NOW - timedelta(days=400))
    write(refund_purchase, "pos", "old", now=NOW - timedelta(days=300))
    assert write(expire_points, NOW) == {}
    assert balance_of(customer.id) == 0


def test_the_expire_points_command_leaves_ledger_entries_and_an_audit_event_by_the_system(app, runner):
    """Does `flask expire-points` expire as the system actor "cli", with its audit event?"""
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", utcnow() - timedelta(days=400))
    db.session.commit()  # no read transaction of the test may hide the command's writes
    result = runner.invoke(args=["expire-points"])
    assert result.output == "100 points expired for 1 members.\n"
    db.session.commit()
    expired = db.session.scalars(sa.select(PointsEntry).where(PointsEntry.kind == "expire")).all()
    assert [(e.points, e.actor) for e in expired] == [(-100, "cli")]
    events = audit_events("points.expire")
    assert [(e.actor, e.actor_id, e.fields) for e in events] == [("cli", None, "points")]


def test_a_failure_of_the_expire_points_command_keeps_no_expiry_and_no_event(app, runner):
    """If the command fails after its audit event is written, are its ledger entries gone too?"""
    app.config["POINTS_EXPIRE_MONTHS"] = 12
    customer = make_customer()
    buy(customer, "old", "100", utcnow() - timedelta(days=400))
    db.session.commit()
    written = "NEW.action = 'points.expire' AND EXISTS (SELECT 1 FROM points_entry WHERE kind = 'expire')"
    with failing_after_insert("audit_event", written):
        result = runner.invoke(args=["expire-points"])
    assert "failed by the test" in str(result.exception)
    db.session.commit()
    assert balance_of(customer.id) == 100 == ledger_sum(customer.id)
    assert audit_events("points.expire") == []


def test_the_recompute_tiers_command_moves_members_as_the_system(app, runner):
    customer = make_customer()
    assert buy(customer, "big", "2500", utcnow() - timedelta(days=400)).tier == "silver"
    db.session.commit()
    result = runner.invoke(args=["recompute-tiers"])
    assert result.output == "1 members changed tier.\n"
    db.session.commit()
    assert db.session.get(LoyaltyAccount, customer.id).tier_code == "member"
    assert [e.actor for e in audit_events("tier.recompute")] == ["cli"]
