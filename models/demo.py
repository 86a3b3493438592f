"""Realistic demo data in Chinese and English, for `make run`, screenshots and benchmarks."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from datetime import timedelta

import phonenumbers
import sqlalchemy as sa
from faker import Faker

from models import db, utcnow
from models.customer import Customer, Gender, SourceChannel
from models.ticket import (
    CHANNELS,
    NewTicket,
    add_message,
    assign,
    category_by_code,
    open_ticket,
    transition,
)
from models.user import Role, StaffUser, create_staff_user

CN_MOBILE_PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "158",
    "159",
    "182",
    "183",
    "187",
    "188",
    "186",
    "185",
    "176",
    "177",
    "180",
    "189",
    "199",
]
CN_CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "南京", "武汉", "苏州", "西安"]
EN_CITIES = ["London", "Manchester", "Bristol", "New York", "Boston", "Chicago", "Toronto", "Sydney"]
CN_MAIL_DOMAINS = ["qq.com", "163.com", "126.com"]
EN_MAIL_DOMAINS = ["example.com", "example.org", "mail.example.net"]
TAGS = ["vip", "wholesale", "newsletter", "birthday-club", "complained-2025", "staff-referral"]
CN_NOTES = ["偏好周末到店", "对包装很在意", "只接受电话联系", "曾投诉配送延迟，已处理", "老客户，常带朋友来"]
EN_NOTES = [
    "Prefers email contact",
    "Allergic to nuts",
    "Asked for invoices by post",
    "Long-time customer, brings friends",
    "Had a late delivery in spring, resolved",
]
DEMO_STAFF = [
    ("manager@patron.local", Role.MANAGER, "Demo Manager"),
    ("agent@patron.local", Role.AGENT, "Demo Agent"),
    ("analyst@patron.local", Role.ANALYST, "Demo Analyst"),
]


def _cn_mobile(rng: random.Random) -> str:
    return rng.choice(CN_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _us_phone(rng: random.Random) -> str:
    while True:
        area = rng.choice([212, 415, 312, 617, 206])
        candidate = f"+1 {area} {rng.randrange(200, 999)} {rng.randrange(10**4):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate, None)):
            return candidate


def demo_customer(fake_cn: Faker, fake_en: Faker, rng: random.Random, serial: int) -> Customer:
    """One plausible customer, Chinese-speaking about two times in three."""
    chinese = rng.random() < 0.66
    fake = fake_cn if chinese else fake_en
    gender = rng.choice([Gender.FEMALE, Gender.MALE, Gender.FEMALE, Gender.MALE, Gender.UNDISCLOSED])
    if gender == Gender.FEMALE:
        name = fake.name_female()
    elif gender == Gender.MALE:
        name = fake.name_male()
    else:
        name = fake.name()
    user = fake_en.user_name() if not chinese else fake_cn.user_name()
    domain = rng.choice(CN_MAIL_DOMAINS if chinese else EN_MAIL_DOMAINS)
    created = utcnow() - timedelta(days=rng.randrange(0, 730), minutes=rng.randrange(0, 1440))
    return Customer(
        name=name,
        email=f"{user}.{serial}@{domain}" if rng.random() < 0.9 else None,
        phone=_cn_mobile(rng) if chinese else _us_phone(rng),
        birthday=fake.date_of_birth(minimum_age=18, maximum_age=80) if rng.random() < 0.7 else None,
        address=fake.address().replace("\n", ", ") if rng.random() < 0.6 else None,
        notes=rng.choice(CN_NOTES if chinese else EN_NOTES) if rng.random() < 0.3 else None,
        city=rng.choice(CN_CITIES if chinese else EN_CITIES),
        gender=gender.value,
        language="zh_Hans_CN" if chinese else "en",
        source_channel=rng.choice(list(SourceChannel)).value,
        tags=",".join(rng.sample(TAGS, rng.choice([0, 0, 1, 1, 2]))),
        created_at=created,
        updated_at=created,
    )


def seed_demo_staff() -> list[tuple[str, str, str]]:
    """Demo manager, agent and analyst accounts, once; returns (email, role, password) made now."""
    made = []
    for email, role, display_name in DEMO_STAFF:
        if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)):
            continue
        password = secrets.token_urlsafe(15)
        create_staff_user(email, password, role, display_name=display_name)
        made.append((email, role.value, password))
    db.session.commit()
    return made


DEMO_TICKETS = [
    # (category, priority, Chinese subject and message, English subject and message, reply zh, reply en)
    (
        "complaint",
        "high",
        ("快递延迟一周", "我的订单 12 号就付款了，到现在还没收到，客服电话也打不通。"),
        ("Parcel a week late", "I paid on the 12th and still have nothing. Nobody answers the phone."),
        "非常抱歉！已联系物流加急处理，今天内给您回复单号。",
        "We are so sorry. We have chased the courier and will send tracking today.",
    ),
    (
        "return_refund",
        "normal",
        ("申请退款：尺码不合适", "外套偏小，想退货退款，吊牌还在。"),
        ("Refund request: wrong size", "The coat is too small; tags still on. I would like a refund."),
        "可以的，已为您生成退货单，请在七天内寄回。",
        "Of course. A return label is on its way; please send it back within 7 days.",
    ),
    (
        "inquiry",
        "low",
        ("会员积分怎么用？", "请问积分可以抵扣运费吗？"),
        ("How do points work?", "Can I use my points for delivery costs?"),
        "积分可在结算时抵扣，100 积分 = 1 元。",
        "Yes: at checkout, 100 points count as 1 unit of currency.",
    ),
    (
        "complaint",
        "urgent",
        ("门店服务态度差", "今天在南京路店被店员无视了二十分钟，很失望。"),
        ("Rude staff in store", "I was ignored for twenty minutes at the Market Street shop today."),
        "感谢反馈，店长会亲自与您联系致歉。",
        "Thank you for telling us. The store manager will call you to apologise.",
    ),
    (
        "suggestion",
        "low",
        ("希望增加夜间配送", "上班族白天不在家，能否增加晚上 7 点后的配送？"),
        ("Evening deliveries, please", "I work days. Could you deliver after 7 pm?"),
        "好建议！我们已转给物流团队评估。",
        "Great idea — we have passed it to our delivery team.",
    ),
    (
        "praise",
        "low",
        ("感谢小王的耐心服务", "小王帮我挑了很久，非常专业，点赞！"),
        ("Thanks to Sam", "Sam spent ages helping me choose. Brilliant service!"),
        "谢谢您的鼓励，我们会转达给小王！",
        "Thank you! We will pass this on to Sam.",
    ),
]


def seed_demo_tickets(count: int, rng: random.Random) -> None:
    """Tickets in every state, in both languages, with threads and history (the caller commits)."""
    customers = list(db.session.scalars(sa.select(Customer).order_by(Customer.id).limit(200)))
    agents = list(db.session.scalars(sa.select(StaffUser).where(StaffUser.role.in_(["agent", "manager"]))))
    now = utcnow()
    for i in range(count):
        category, priority, zh, en, reply_zh, reply_en = DEMO_TICKETS[i % len(DEMO_TICKETS)]
        customer = rng.choice(customers) if customers else None
        chinese = customer is None or customer.language == "zh_Hans_CN"
        subject, message = zh if chinese else en
        opened = now - timedelta(hours=rng.randrange(1, 24 * 20), minutes=rng.randrange(60))
        ticket, _code = open_ticket(
            NewTicket(
                subject=subject,
                channel=rng.choice(CHANNELS),
                priority=priority,
                category=category_by_code(category),
                customer_id=customer.id if customer else None,
                first_message=message,
            ),
            now=opened,
        )
        _play_demo_ticket(ticket, rng, agents, opened, reply_zh if chinese else reply_en, now)


def _play_demo_ticket(ticket, rng, agents, opened, reply, now) -> None:
    """Move a demo ticket some way along its life: assigned, answered, resolved, closed."""
    stage = rng.choice(["new", "new", "acknowledged", "investigating", "waiting", "resolved", "closed"])
    if stage == "new" or not agents:
        return
    agent = rng.choice(agents)
    step = opened + timedelta(minutes=rng.randrange(5, 300))
    assign(ticket, agent, agent, step)
    transition(ticket, "acknowledged", agent, min(step, now))
    if stage == "acknowledged":
        return
    add_message(ticket, "outbound", reply, agent, min(step + timedelta(minutes=20), now))
    transition(ticket, "investigating", agent, min(step + timedelta(minutes=25), now))
    if stage == "waiting":
        transition(ticket, "waiting_on_customer", agent, min(step + timedelta(hours=1), now))
    elif stage in ("resolved", "closed"):
        add_message(
            ticket, "note", "已核实 / Checked with the warehouse.", agent, min(step + timedelta(hours=2), now)
        )
        transition(ticket, "resolved", agent, min(step + timedelta(hours=3), now))
        if stage == "closed":
            transition(ticket, "closed", agent, min(step + timedelta(days=2), now))


DEMO_REWARDS = [
    # English, Chinese, points, stock (None: unlimited), minimum tier
    ("Coffee voucher", "咖啡兑换券", 300, None, None),
    ("Canvas tote bag", "帆布托特包", 800, 50, None),
    ("¥50 off your next order", "下单立减 50 元", 1500, None, None),
    ("Members' evening: autumn collection", "会员之夜：秋季新品预览", 2500, 30, "gold"),
    ("Free alterations for a year", "一年免费修改服务", 6000, 10, "platinum"),
]


def seed_demo_rewards() -> list[int]:
    """The demo reward catalogue, once; returns the reward ids."""
    from models.rewards import Reward

    if db.session.scalar(sa.select(sa.func.count(Reward.id))):
        return list(db.session.scalars(sa.select(Reward.id)))
    for name_en, name_zh, cost, stock, tier in DEMO_REWARDS:
        db.session.add(Reward(name_en=name_en, name_zh=name_zh, points_cost=cost, stock=stock, min_tier=tier))
    db.session.commit()
    return list(db.session.scalars(sa.select(Reward.id)))


def seed_demo_purchases(rng: random.Random, customers: int = 120) -> None:
    """A year of purchases for some customers, a few refunds and redemptions (each committed)."""
    from decimal import Decimal

    from models.loyalty import (
        InsufficientPoints,
        LoyaltyError,
        NewPurchase,
        recompute_tiers,
        record_purchase,
        refund_purchase,
    )
    from models.rewards import OutOfStock, redeem

    reward_ids = seed_demo_rewards()
    ids = list(db.session.scalars(sa.select(Customer.id).order_by(Customer.id).limit(customers)))
    now = utcnow()
    for customer_id in ids:
        times = sorted(
            now - timedelta(days=rng.randrange(1, 360), minutes=rng.randrange(1440))
            for _ in range(rng.choice([1, 2, 3, 5, 8, 12]))
        )
        for n, when in enumerate(times):
            amount = (
                Decimal(rng.choice([39, 88, 129, 268, 499, 899, 1599])) + Decimal(rng.randrange(100)) / 100
            )
            spec = NewPurchase(
                customer_id,
                "pos",
                f"D{customer_id:05d}-{n:02d}",
                amount,
                "CNY",
                rng.choice(["store", "online"]),
                when,
            )
            record_purchase(spec, actor="demo", now=when)
        if rng.random() < 0.08:
            refund_purchase("pos", f"D{customer_id:05d}-00", actor="demo")
        if rng.random() < 0.4:
            try:
                redeem(customer_id, rng.choice(reward_ids), actor="demo")
            except (InsufficientPoints, OutOfStock, LoyaltyError):
                db.session.rollback()
    recompute_tiers(now)  # purchases were posted out of time order


def seed_demo(
    customers: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
    seed: int | None = None,
    tickets: int = 0,
    purchases: int = 0,
) -> list[tuple[str, str, str]]:
    """Add demo staff (first time), customers (batch by batch) and tickets."""
    staff = seed_demo_staff()
    rng = random.Random(seed)
    fake_cn, fake_en = Faker("zh_CN"), Faker("en_GB")
    if seed is not None:
        fake_cn.seed_instance(seed)
        fake_en.seed_instance(seed + 1)
    start = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(Customer.id), 0))) or 0
    for offset in range(0, customers, batch_size):
        size = min(batch_size, customers - offset)
        db.session.add_all(demo_customer(fake_cn, fake_en, rng, start + offset + i + 1) for i in range(size))
        db.session.commit()
        db.session.expunge_all()
        if progress:
            progress(size)
    if tickets:
        seed_demo_tickets(tickets, rng)
        db.session.commit()
    if purchases:
        seed_demo_purchases(rng, purchases)
    return staff
