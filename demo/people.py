"""Demo customers (two in three Chinese-speaking) and the demo staff accounts."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from datetime import timedelta

import phonenumbers
import sqlalchemy as sa
from faker import Faker

from demo.actor import DEMO
from models import db, utcnow
from models.customer import PII_FIELDS, Customer, Gender, SourceChannel
from models.uow import unit_of_work
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
    with unit_of_work(DEMO):
        for email, role, display_name in DEMO_STAFF:
            if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)):
                continue
            password = secrets.token_urlsafe(15)
            create_staff_user(email, password, role, display_name=display_name)
            made.append((email, role.value, password))
    return made


def seed_demo_customers(
    count: int,
    rng: random.Random,
    seed: int | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> None:
    """`count` customers, one unit of work per batch (told to `progress` batch by batch)."""
    fake_cn, fake_en = Faker("zh_CN"), Faker("en_GB")
    if seed is not None:
        fake_cn.seed_instance(seed)
        fake_en.seed_instance(seed + 1)
    start = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(Customer.id), 0))) or 0
    for offset in range(0, count, batch_size):
        size = min(batch_size, count - offset)
        with unit_of_work(DEMO) as uow:
            uow.session.add_all(
                demo_customer(fake_cn, fake_en, rng, start + offset + i + 1) for i in range(size)
            )
            uow.audit("customer.create", "customer", None, PII_FIELDS, detail=f"demo: n={size}")
        db.session.expunge_all()  # a large seed would otherwise keep every customer in memory
        if progress:
            progress(size)
