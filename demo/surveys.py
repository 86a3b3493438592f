"""Demo surveys: three questionnaires with twelve weeks of answers, invitations and ticket ratings."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from demo.actor import DEMO
from demo.tickets import demo_agents, play_demo_ticket
from models import db, utcnow
from models.customer import Customer
from models.surveys.answers import SurveyResponse, submit_response
from models.surveys.builder import Question, Survey
from models.surveys.invitations import (
    Invitation,
    InvitationGone,
    create_invitation,
    expire_invitations,
    mark_sent,
    open_invitation,
)
from models.tickets.ticket import Ticket
from models.uow import current_uow, unit_of_work

SURVEY_FIELDS = ("title", "intro", "thank_you", "language", "opens_at", "public_link", "questions")


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
    uow = current_uow()
    uow.add(survey)
    uow.session.flush()
    uow.audit("survey.create", "survey", survey.id, SURVEY_FIELDS, detail="demo")
    return survey


def _invite(survey: Survey, customer_id: int, at: datetime, send: bool = True, **link) -> str:
    """An invitation created at `at` (and handed out when `send`); its token."""
    invitation, token = create_invitation(survey, customer_id, now=at, **link)
    if send:
        mark_sent([invitation])
    return token


def _answer_invitation(survey: Survey, answers: dict, token: str, invited: datetime, at: datetime) -> None:
    """The customer opens the link shortly before answering, at `at`."""
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
    """An invitation left in `status`: an expired one was opened (and refused) after its 14 days."""
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
        assert customer_id is not None and resolved_at is not None  # joined and filtered on both
        token = _invite(survey, customer_id, resolved_at, days_valid=7, ticket_id=ticket_id)
        if n % 4 == 3:
            continue
        at = min(resolved_at + timedelta(hours=rng.uniform(0.5, 40)), now)
        answers = _demo_answers(spec, survey, rng, None, _csat_score(rng), language)
        _answer_invitation(survey, answers, token, resolved_at, at)


def _pick_up_follow_ups(rng: random.Random, now: datetime) -> None:
    """Follow-up tickets older than a few days were taken on by an agent, most resolved."""
    rows = db.session.execute(
        sa.select(
            Ticket.id, SurveyResponse.submitted_at, sa.func.coalesce(Customer.language, Survey.language)
        )
        .join(SurveyResponse, SurveyResponse.follow_up_ticket_id == Ticket.id)
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .outerjoin(Customer, Customer.id == SurveyResponse.customer_id)
        .where(Ticket.status == "new", SurveyResponse.submitted_at < now - timedelta(days=4))
        .order_by(Ticket.id)
    ).all()
    agents = demo_agents()
    for ticket_id, submitted_at, language in rows:
        reply = FOLLOW_UP_REPLIES.get(language, FOLLOW_UP_REPLIES["en"])
        play_demo_ticket(ticket_id, rng, agents, submitted_at, reply, now, rng.choice(FOLLOW_UP_STAGES))


def seed_demo_surveys(rng: random.Random, responses: int) -> bool:
    """Three surveys with twelve weeks of answers, ticket ratings and invitations; False if any exist.

    `responses` are shared between the store and delivery surveys; the satisfaction survey
    rates resolved tickets. Detractors' follow-up tickets (opened by the answers' events)
    older than a few days are worked on. The surveys are made in one unit of work, the
    answers in a second, and each follow-up ticket is worked in its own.
    """
    if db.session.scalar(sa.select(Survey.id).limit(1)) is not None:
        return False
    now = utcnow()
    # keep_state: the answers are built from the surveys and questions as they are loaded now.
    with unit_of_work(DEMO, keep_state=True):
        surveys = [(spec, _create_demo_survey(spec, now - timedelta(weeks=13))) for spec in DEMO_SURVEYS]
    counts = [int(responses * spec.share) for spec in DEMO_SURVEYS]
    counts[0] += responses - sum(counts)
    with unit_of_work(DEMO):
        for (spec, survey), count in zip(surveys, counts, strict=True):
            if spec.send_on_resolution:
                _seed_ticket_ratings(spec, survey, rng, now)
            else:
                _seed_survey_responses(spec, survey, count, rng, now)
        expire_invitations(now)  # what the scheduled job would have stored by now
    _pick_up_follow_ups(rng, now)
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
