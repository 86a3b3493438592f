"""Demo loyalty: a reward catalogue and a year of purchases, refunds and redemptions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from demo.actor import DEMO
from models import db, utcnow
from models.customer import Customer
from models.loyalty.programme import LoyaltyError
from models.loyalty.purchases import NewPurchase, record_purchase, refund_purchase
from models.loyalty.rewards import Reward, redeem
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


def seed_demo_purchases(rng: random.Random, customers: int = 120, batch_size: int = 50) -> None:
    """A year of purchases for some customers, a few refunds and redemptions.

    One unit of work per batch of customers; the tiers are recomputed at the end, since the
    purchases were posted out of time order.
    """
    reward_ids = seed_demo_rewards()
    ids = list(db.session.scalars(sa.select(Customer.id).order_by(Customer.id).limit(customers)))
    now = utcnow()
    for first in range(0, len(ids), batch_size):
        with unit_of_work(DEMO):
            for customer_id in ids[first : first + batch_size]:
                _shop(customer_id, rng, reward_ids, now)
    with unit_of_work(DEMO):
        recompute_tiers(now)


def _shop(customer_id: int, rng: random.Random, reward_ids: list[int], now: datetime) -> None:
    """A customer's year: purchases, perhaps the first one refunded, perhaps a reward."""
    times = sorted(
        now - timedelta(days=rng.randrange(1, 360), minutes=rng.randrange(1440))
        for _ in range(rng.choice([1, 2, 3, 5, 8, 12]))
    )
    for n, when in enumerate(times):
        amount = Decimal(rng.choice([39, 88, 129, 268, 499, 899, 1599])) + Decimal(rng.randrange(100)) / 100
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
    if rng.random() < 0.08:
        refund_purchase("pos", f"D{customer_id:05d}-00")
    if rng.random() < 0.4:
        try:
            redeem(customer_id, rng.choice(reward_ids))
        except LoyaltyError:
            pass  # too few points, out of stock or not eligible: redeem() changed nothing
