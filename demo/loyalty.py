"""Demo loyalty: a reward catalogue and a year of purchases, refunds and redemptions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from demo.actor import DEMO
from models import db, utcnow
from models.customer import Customer
from models.loyalty.ledger import LoyaltyAccount, PointsEntry
from models.loyalty.programme import LoyaltyError
from models.loyalty.purchases import NewPurchase, record_purchase, refund_purchase
from models.loyalty.rewards import Redemption, Reward, cancel_redemption, mark_used, redeem
from models.loyalty.tiers import recompute_tiers
from models.uow import unit_of_work

DEMO_REWARDS = [
    # English, Chinese, points, stock (None: unlimited), minimum tier
    ("Coffee voucher", "咖啡兑换券", 300, None, None),
    ("Canvas tote bag", "帆布托特包", 800, 50, None),
    ("¥50 off your next order", "下单立减 50 元", 1500, None, None),
    ("Members' evening: autumn collection", "会员之夜：秋季新品预览", 2500, 30, "gold"),
    ("Free alterations for a year", "一年免费修改服务", 6000, 10, "platinum"),
]
REWARD_FIELDS = ("name_en", "name_zh", "points_cost", "stock", "min_tier")


def seed_demo_rewards() -> list[int]:
    """The demo reward catalogue, once; returns the reward ids."""
    if not db.session.scalar(sa.select(sa.func.count(Reward.id))):
        with unit_of_work(DEMO) as uow:
            for name_en, name_zh, cost, stock, tier in DEMO_REWARDS:
                uow.add(
                    Reward(name_en=name_en, name_zh=name_zh, points_cost=cost, stock=stock, min_tier=tier)
                )
            uow.audit("reward.create", "reward", None, REWARD_FIELDS, detail=f"demo: n={len(DEMO_REWARDS)}")
    return list(db.session.scalars(sa.select(Reward.id)))


REGULAR_EVERY = 10  # one buyer in ten (the first among them) shops most weeks and climbs the tiers
REDEEM_AFTER_VISIT = 0.3  # chance of a redemption between a visit and the next
RECENT_REDEMPTIONS = timedelta(days=80)  # each reward is redeemed at least once in this window


def seed_demo_purchases(rng: random.Random, customers: int = 120, batch_size: int = 50) -> None:
    """A year of purchases for some customers, refunds and redemptions spread over the year.

    One unit of work per batch of customers; the tiers are recomputed at the end, since the
    purchases were posted out of time order. Then every reward not redeemed lately is redeemed
    once, by a member who can have it, so the "top rewards" figure shows the whole catalogue.
    """
    reward_ids = seed_demo_rewards()
    ids = list(db.session.scalars(sa.select(Customer.id).order_by(Customer.id).limit(customers)))
    now = utcnow()
    for first in range(0, len(ids), batch_size):
        with unit_of_work(DEMO):
            for n, customer_id in enumerate(ids[first : first + batch_size], start=first):
                _shop(customer_id, rng, reward_ids, now, regular=n % REGULAR_EVERY == 0)
    with unit_of_work(DEMO):
        recompute_tiers(now)
    if ids:
        with unit_of_work(DEMO):
            _redeem_each_lately(reward_ids, now)


def _shop(customer_id: int, rng: random.Random, reward_ids: list[int], now: datetime, regular: bool) -> None:
    """A customer's year: purchases, perhaps the first one refunded, rewards between visits."""
    visits = rng.randrange(18, 30) if regular else rng.choice([1, 2, 3, 5, 8, 12])
    prices = [268, 499, 899, 1599, 2399] if regular else [39, 88, 129, 268, 499, 899, 1599]
    times = sorted(
        now - timedelta(days=rng.randrange(1, 360), minutes=rng.randrange(1440)) for _ in range(visits)
    )
    for n, when in enumerate(times):
        amount = Decimal(rng.choice(prices)) + Decimal(rng.randrange(100)) / 100
        spec = NewPurchase(
            customer_id,
            "pos",
            f"D{customer_id:05d}-{n:02d}",
            amount,
            "CNY",
            rng.choice(["store", "online"]),
            when,
        )
        record_purchase(spec, now=when)
        until = times[n + 1] if n + 1 < len(times) else now
        if rng.random() < (REDEEM_AFTER_VISIT if n + 1 < len(times) else 0.6):
            _redeem_one(customer_id, rng, reward_ids, when, until, now)
    if rng.random() < 0.08:
        refund_purchase("pos", f"D{customer_id:05d}-00")


def _redeem_one(
    customer_id: int,
    rng: random.Random,
    reward_ids: list[int],
    after: datetime,
    until: datetime,
    now: datetime,
) -> None:
    """A coupon between two visits; some used at the till, one in ten cancelled before the next visit.

    Each reward is tried in turn (in random order) until one is granted, so that most members with
    enough points end up with a coupon on their page. The ledger stays in time order: the points
    are taken, and given back on a cancellation, before the next visit's purchase earns any.
    """
    when = after + (until - after) * rng.uniform(0.05, 0.6)
    for reward_id in rng.sample(reward_ids, len(reward_ids)):
        try:
            result = redeem(customer_id, reward_id, when)
        except LoyaltyError:
            continue  # too few points, out of stock or not eligible: redeem() changed nothing
        redemption = db.session.get(Redemption, result.redemption.id)
        if redemption is not None:
            roll = rng.random()
            if roll < 0.35:
                mark_used(redemption, when + (now - when) * rng.random())
            elif roll < 0.45:
                cancel_redemption(redemption.id, when + (until - when) * rng.random())
        return


def _redeem_each_lately(reward_ids: list[int], now: datetime) -> None:
    """Every reward nobody redeemed in the recent window, once, by the richest member who may have it.

    At a moment after that member's last points entry, so their statement stays in time order.
    """
    since = now - RECENT_REDEMPTIONS
    redeemed = set(db.session.scalars(sa.select(Redemption.reward_id).where(Redemption.created_at >= since)))
    members = db.session.execute(
        sa.select(LoyaltyAccount.customer_id, sa.func.max(PointsEntry.created_at))
        .join(PointsEntry, PointsEntry.customer_id == LoyaltyAccount.customer_id)
        .group_by(LoyaltyAccount.customer_id, LoyaltyAccount.balance)
        .order_by(LoyaltyAccount.balance.desc(), LoyaltyAccount.customer_id)
        .limit(40)
    ).all()
    for reward_id in reward_ids:
        if reward_id in redeemed:
            continue
        for customer_id, last in members:
            start = max(last, since)
            try:
                redeem(customer_id, reward_id, start + (now - start) / 2)
            except LoyaltyError:
                continue
            break
