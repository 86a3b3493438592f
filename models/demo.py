"""Realistic demo data in Chinese and English, for `make run`, screenshots and benchmarks."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
import sqlalchemy as sa
from faker import Faker

from models import db, utcnow
from models.customer import Customer, Gender, SourceChannel
from models.survey import (
    Invitation,
    InvitationGone,
    Question,
    Survey,
    SurveyResponse,
    create_invitation,
    mark_sent,
    open_invitation,
)
from models.survey_answers import submit_response
from models.ticket import (
    CHANNELS,
    NewTicket,
    Ticket,
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
    agents = _demo_agents()
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


DEMO_STAGES = ("new", "new", "acknowledged", "investigating", "waiting", "resolved", "closed")


def _demo_agents() -> list[StaffUser]:
    return list(db.session.scalars(sa.select(StaffUser).where(StaffUser.role.in_(["agent", "manager"]))))


def _play_demo_ticket(ticket, rng, agents, opened, reply, now, stage: str | None = None) -> None:
    """Move a demo ticket along its life, to `stage` or a random one: assigned, answered, resolved."""
    stage = stage or rng.choice(DEMO_STAGES)
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


@dataclass(frozen=True)
class DemoSurvey:
    """A demo questionnaire; questions are (kind, prompt, required, options one per line)."""

    topic: str  # picks the free-text comments
    title: str
    language: str
    intro: str
    thank_you: str
    questions: tuple[tuple[str, str, bool, str], ...]
    public_slug: str | None = None
    send_on_resolution: bool = False
    share: float = 0.0  # of the requested responses (the resolution survey answers resolved tickets)


DEMO_SURVEYS = (
    DemoSurvey(
        topic="store",
        title="门店购物体验调查",
        language="zh_Hans_CN",
        intro="感谢您最近到店选购！占用您一分钟，帮助我们把门店做得更好。",
        thank_you="谢谢您的反馈！我们会认真阅读每一条意见。",
        public_slug="store-visit",
        share=0.6,
        questions=(
            ("nps", "您有多大可能向朋友或同事推荐我们的门店？", True, ""),
            ("rating", "总体来说，您对这次到店购物满意吗？", True, ""),
            ("single", "您这次去的是哪家门店？", True, "南京西路店\n徐家汇店\n静安寺店"),
            ("multiple", "哪些方面让您满意？（可多选）", False, "导购服务\n商品质量\n价格\n环境"),
            ("text", "还有什么想告诉我们的吗？", False, ""),
        ),
    ),
    DemoSurvey(
        topic="delivery",
        title="Delivery satisfaction",
        language="en",
        intro="Your order arrived recently. Two minutes of your time helps us deliver better.",
        thank_you="Thank you! Our delivery team reads every comment.",
        public_slug="delivery",
        share=0.4,
        questions=(
            ("nps", "How likely are you to recommend us to a friend or colleague?", True, ""),
            ("rating", "How satisfied are you with your delivery?", True, ""),
            (
                "single",
                "Which delivery option did you choose?",
                True,
                "Standard (3–5 days)\nExpress (next day)\nClick & collect",
            ),
            ("text", "Anything we could do better?", False, ""),
        ),
    ),
    DemoSurvey(
        topic="support",
        title="服务满意度 · Support satisfaction",
        language="zh_Hans_CN",
        intro="您的问题已处理完毕，请为这次服务打分。/ Your request is resolved: please rate our help.",
        thank_you="谢谢您的评价！/ Thank you for your rating!",
        send_on_resolution=True,
        questions=(
            ("rating", "您对这次客服的满意度如何？/ How satisfied are you with our help?", True, ""),
            ("text", "有什么建议吗？/ Anything we could do better?", False, ""),
        ),
    ),
)

DEMO_COMMENTS = {
    ("store", "zh_Hans_CN"): {
        "praise": (
            "导购小姐姐很耐心，帮我搭配了一整套，下次还来。",
            "店里很干净，试衣间也宽敞，体验很好。",
            "新品质量不错，面料摸起来很舒服。",
            "会员积分抵扣很方便，结账也快。",
            "店员主动帮我找尺码，服务很贴心。",
            "环境舒服，音乐也不吵，逛得很开心。",
        ),
        "neutral": (
            "整体还行，就是周末人有点多。",
            "东西不错，价格稍微有点贵。",
            "试衣间排队时间有点长。",
            "希望能多一些大码的款式。",
            "停车不太方便，其他都还好。",
        ),
        "complaint": (
            "等了十几分钟都没人理，体验很差。",
            "想要的尺码一直缺货，说调货也没有下文。",
            "结账只开了一个收银台，排了半小时队。",
            "买回去洗了一次就起球了，质量让人失望。",
            "店员态度冷淡，问问题爱答不理。",
        ),
    },
    ("delivery", "en"): {
        "praise": (
            "Arrived a day early and beautifully packed.",
            "The courier rang ahead and left it with my neighbour as asked. Perfect.",
            "Tracking was spot on, delivered inside the one-hour slot.",
            "Quick, easy, no fuss. Thank you!",
            "Love the recyclable packaging.",
        ),
        "neutral": (
            "Fine overall, but the delivery window was very wide.",
            "Came on time, though the box was a bit squashed.",
            "It would be nice to choose an evening slot.",
            "Tracking stopped updating for two days, then it turned up.",
        ),
        "complaint": (
            "Three days late and nobody told me why.",
            "The parcel was left on the doorstep in the rain.",
            "One item was missing and I had to chase it twice.",
            "Marked as delivered, but it never came.",
            "The box was crushed and the mug inside was broken.",
        ),
    },
    ("support", "zh_Hans_CN"): {
        "praise": (
            "客服回复很快，问题一次就解决了。",
            "处理得很专业，谢谢！",
            "态度很好，还主动告诉我后续怎么查询。",
            "退款很快就到账了，点赞。",
        ),
        "neutral": (
            "问题解决了，就是等得有点久。",
            "中间换了两个客服，要重复说明情况。",
            "结果还可以，希望下次能更快。",
        ),
        "complaint": (
            "拖了一个星期才处理，太慢了。",
            "说好回电话，结果没人打来。",
            "问题根本没解决就把工单关了。",
        ),
    },
    ("support", "en"): {
        "praise": (
            "Sorted in one reply. Brilliant.",
            "Very friendly, and clear about what happens next.",
            "The refund arrived the same day. Thanks!",
            "Patient and genuinely helpful.",
        ),
        "neutral": (
            "Got there in the end, but it took a few emails.",
            "Fine, though I had to explain everything twice.",
            "Helpful, but the first answer missed my question.",
        ),
        "complaint": (
            "It took a week to get a real answer.",
            "You closed my ticket without fixing anything.",
            "I was promised a call back that never came.",
        ),
    },
}
COMMENT_ODDS = {"praise": 0.45, "neutral": 0.5, "complaint": 0.8}  # unhappy customers write more
FOLLOW_UP_REPLIES = {
    "zh_Hans_CN": "您好，看到您在问卷中的反馈，非常抱歉给您带来不好的体验。我们已安排专人跟进。",
    "en": "Hello, thank you for your honest feedback. We are sorry we let you down and will call you.",
}
FOLLOW_UP_STAGES = ("investigating", "resolved", "closed", "closed")
# Invitations nobody answered, in turn: handed out, expired before use, opened only, not yet sent.
UNANSWERED = ("sent", "expired", "opened", "sent", "created", "expired", "sent")
UNANSWERED_AGE_DAYS = {"created": (0, 3), "sent": (1, 12), "opened": (1, 12), "expired": (20, 80)}
SURVEY_WEEKS = 12
MAX_RATED_TICKETS = 500


@dataclass(frozen=True)
class DemoWeek:
    """One week of answers: how many (relative weight) and how the scores lean."""

    weeks_ago: int
    weight: float
    detractors: float  # share of NPS 0–6
    passives: float  # share of NPS 7–8


def _demo_weeks(rng: random.Random) -> list[DemoWeek]:
    """Answers ramp up after launch; detractors slowly fall, but one week went badly."""
    rough = rng.randrange(1, SURVEY_WEEKS - 1)
    weeks = []
    for weeks_ago in range(SURVEY_WEEKS):
        age = SURVEY_WEEKS - 1 - weeks_ago  # weeks since the survey went out
        detractors = 0.2 if weeks_ago == rough else max(0.03, 0.13 - 0.005 * age + rng.uniform(-0.03, 0.03))
        weight = min(1.0, 0.35 + 0.15 * age) * rng.uniform(0.75, 1.25)
        weeks.append(DemoWeek(weeks_ago, weight, detractors, rng.uniform(0.15, 0.3)))
    return weeks


def _nps_score(rng: random.Random, week: DemoWeek) -> int:
    roll = rng.random()
    if roll < week.detractors:
        return rng.choice((1, 3, 4, 5, 5, 6, 6, 6))
    if roll < week.detractors + week.passives:
        return rng.choice((7, 7, 8, 8, 8))
    return rng.choice((9, 9, 10, 10, 10))


def _rating_for(nps: int, rng: random.Random) -> int:
    """A CSAT rating in line with the NPS: only detractors rate 1–2."""
    if nps >= 9:
        return rng.choice((5, 5, 5, 4))
    if nps >= 7:
        return rng.choice((4, 4, 3, 5))
    return rng.choice((1, 2, 2, 3, 3))


def _csat_score(rng: random.Random) -> int:
    return rng.choices((5, 4, 3, 2, 1), weights=(55, 25, 11, 5, 4))[0]


def _mood(rating: int) -> str:
    return "praise" if rating >= 4 else "neutral" if rating == 3 else "complaint"


def _demo_answers(
    spec: DemoSurvey, survey: Survey, rng: random.Random, nps: int | None, rating: int, language: str
) -> dict[int, object]:
    """Answers to every question, consistent with the scores; comments in `language`."""
    mood = _mood(rating)
    comments = DEMO_COMMENTS.get((spec.topic, language)) or DEMO_COMMENTS[(spec.topic, spec.language)]
    answers: dict[int, object] = {}
    for question in survey.questions:
        choices = question.choices
        if question.kind == "nps":
            answers[question.id] = nps
        elif question.kind == "rating":
            answers[question.id] = rating
        elif question.kind == "single":  # the first options are the popular ones
            answers[question.id] = rng.choices(choices, weights=range(len(choices) + 1, 1, -1))[0]
        elif question.kind == "multiple":
            picked = {"praise": (2, 3), "neutral": (1, 2), "complaint": (0, 1)}[mood]
            answers[question.id] = rng.sample(choices, rng.randint(*picked))
        elif rng.random() < COMMENT_ODDS[mood]:
            answers[question.id] = rng.choice(comments[mood])
    return answers


def _create_demo_survey(spec: DemoSurvey, opens_at: datetime) -> Survey:
    survey = Survey(
        title=spec.title,
        intro=spec.intro,
        thank_you=spec.thank_you,
        language=spec.language,
        opens_at=opens_at,
        public_link=spec.public_slug is not None,
        public_slug=spec.public_slug,
        send_on_resolution=spec.send_on_resolution,
        created_at=opens_at - timedelta(days=2),
    )
    survey.questions = [
        Question(position=n, kind=kind, prompt=prompt, required=required, options=options)
        for n, (kind, prompt, required, options) in enumerate(spec.questions, start=1)
    ]
    db.session.add(survey)
    return survey


def _invite(survey: Survey, customer_id: int, at: datetime, send: bool = True, **link) -> str:
    """An invitation created at `at` (and handed out when `send`), committed by the next write; its token."""
    invitation, token = create_invitation(survey, customer_id, now=at, **link)
    if send:
        mark_sent([invitation])
    return token


def _answer_invitation(survey: Survey, answers: dict, token: str, invited: datetime, at: datetime) -> None:
    """The customer opens the link shortly before answering, at `at` (both committed)."""
    invitation = open_invitation(token, now=invited + (at - invited) * 0.9)
    submit_response(survey, answers, invitation, now=at)


def _seed_survey_responses(
    spec: DemoSurvey, survey: Survey, count: int, rng: random.Random, now: datetime
) -> None:
    """`count` responses over the past weeks: most invited customers, some on the public link."""
    customers = list(
        db.session.scalars(
            sa.select(Customer.id).where(Customer.language == spec.language).order_by(Customer.id).limit(2000)
        )
    )
    weeks = _demo_weeks(rng)
    invited = 0
    for _ in range(count):
        week = rng.choices(weeks, weights=[w.weight for w in weeks])[0]
        at = now - timedelta(days=7 * week.weeks_ago + rng.uniform(0, 7))
        nps = _nps_score(rng, week)
        answers = _demo_answers(spec, survey, rng, nps, _rating_for(nps, rng), spec.language)
        if customers and rng.random() < 0.8:
            invited_at = at - timedelta(hours=rng.uniform(2, 72))
            token = _invite(survey, rng.choice(customers), invited_at)
            _answer_invitation(survey, answers, token, invited_at, at)
            invited += 1
        else:
            submit_response(survey, answers, now=at)
    for status in (UNANSWERED * (invited // len(UNANSWERED) + 1))[: round(invited * 0.35)]:
        _leave_unanswered(survey, rng.choice(customers), status, rng, now)


def _leave_unanswered(
    survey: Survey, customer_id: int, status: str, rng: random.Random, now: datetime
) -> None:
    """An invitation left in `status`: an expired one was opened after its 14 days."""
    low, high = UNANSWERED_AGE_DAYS[status]
    invited = now - timedelta(days=rng.uniform(low, high))
    token = _invite(survey, customer_id, invited, send=status != "created")
    if status == "opened":
        open_invitation(token, now=invited + (now - invited) * rng.uniform(0.1, 0.9))
    elif status == "expired":
        try:
            open_invitation(token, now=invited + timedelta(days=rng.uniform(15, 19)))
        except InvitationGone:
            pass


def _seed_ticket_ratings(spec: DemoSurvey, survey: Survey, rng: random.Random, now: datetime) -> None:
    """Resolved tickets' customers were invited; three in four rated the help (ticket.csat_score)."""
    rows = db.session.execute(
        sa.select(Ticket.id, Ticket.customer_id, Ticket.resolved_at, Customer.language)
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(
            Ticket.status.in_(("resolved", "closed")),
            Ticket.resolved_at > survey.opens_at,
            Ticket.csat_score.is_(None),
        )
        .order_by(Ticket.id.desc())
        .limit(MAX_RATED_TICKETS)
    ).all()
    for n, (ticket_id, customer_id, resolved_at, language) in enumerate(rows):
        token = _invite(survey, customer_id, resolved_at, days_valid=7, ticket_id=ticket_id)
        if n % 4 == 3:
            continue
        at = min(resolved_at + timedelta(hours=rng.uniform(0.5, 40)), now)
        answers = _demo_answers(spec, survey, rng, None, _csat_score(rng), language)
        _answer_invitation(survey, answers, token, resolved_at, at)


def _pick_up_follow_ups(rng: random.Random, now: datetime) -> None:
    """Follow-up tickets older than a few days were taken on by an agent, most resolved."""
    rows = db.session.execute(
        sa.select(Ticket, SurveyResponse.submitted_at, sa.func.coalesce(Customer.language, Survey.language))
        .join(SurveyResponse, SurveyResponse.follow_up_ticket_id == Ticket.id)
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .outerjoin(Customer, Customer.id == SurveyResponse.customer_id)
        .where(Ticket.status == "new", SurveyResponse.submitted_at < now - timedelta(days=4))
        .order_by(Ticket.id)
    ).all()
    agents = _demo_agents()
    for ticket, submitted_at, language in rows:
        reply = FOLLOW_UP_REPLIES.get(language, FOLLOW_UP_REPLIES["en"])
        _play_demo_ticket(ticket, rng, agents, submitted_at, reply, now, rng.choice(FOLLOW_UP_STAGES))


def seed_demo_surveys(rng: random.Random, responses: int) -> bool:
    """Three surveys with twelve weeks of answers, ticket ratings and invitations; False if any exist.

    `responses` are shared between the store and delivery surveys; the satisfaction survey
    rates resolved tickets. Detractors' follow-up tickets older than a few days are worked on.
    """
    if db.session.scalar(sa.select(Survey.id).limit(1)) is not None:
        return False
    now = utcnow()
    surveys = [(spec, _create_demo_survey(spec, now - timedelta(weeks=13))) for spec in DEMO_SURVEYS]
    counts = [int(responses * spec.share) for spec in DEMO_SURVEYS]
    counts[0] += responses - sum(counts)
    session = db.session()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False  # the only writer here
    try:
        session.commit()
        for (spec, survey), count in zip(surveys, counts, strict=True):
            if spec.send_on_resolution:
                _seed_ticket_ratings(spec, survey, rng, now)
            else:
                _seed_survey_responses(spec, survey, count, rng, now)
        _pick_up_follow_ups(rng, now)
        session.commit()
    finally:
        session.expire_on_commit = expire_on_commit
    return True


def demo_survey_totals() -> tuple[int, int, int]:
    """Surveys, their responses (ticket ratings apart) and tickets rated by their customer."""
    responses = (
        sa.select(sa.func.count(SurveyResponse.id))
        .outerjoin(Invitation, Invitation.id == SurveyResponse.invitation_id)
        .where(Invitation.ticket_id.is_(None))
    )
    return (
        db.session.scalar(sa.select(sa.func.count(Survey.id))) or 0,
        db.session.scalar(responses) or 0,
        db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(Ticket.csat_score.is_not(None))) or 0,
    )


def seed_demo(
    customers: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
    seed: int | None = None,
    tickets: int = 0,
    purchases: int = 0,
    survey_responses: int = 0,
) -> list[tuple[str, str, str]]:
    """Add demo staff (first time), customers (batch by batch), tickets, purchases and surveys.

    `progress` is told how many items of each kind are done: customers batch by batch, then
    the tickets, the buyers and the survey responses as each phase ends.
    """
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
    progress = progress or (lambda _done: None)
    if tickets:
        seed_demo_tickets(tickets, rng)
        db.session.commit()
        progress(tickets)
    if purchases:
        seed_demo_purchases(rng, purchases)
        progress(purchases)
    if survey_responses:
        seed_demo_surveys(rng, survey_responses)  # after tickets: resolved ones get rated
        progress(survey_responses)
    return staff
