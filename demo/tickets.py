"""Demo tickets: opened by customers, worked by the demo agents, in both languages."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import sqlalchemy as sa

from demo.actor import DEMO, acting_for
from models import db, utcnow
from models.customer import Customer
from models.tickets.ticket import (
    CHANNELS,
    NewTicket,
    Ticket,
    add_message,
    assign,
    category_by_code,
    move_ticket,
    open_ticket,
)
from models.uow import unit_of_work
from models.user import StaffUser

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


def seed_demo_tickets(count: int, rng: random.Random, batch_size: int = 200) -> None:
    """Tickets in every state, in both languages, with threads and history.

    Customers open them, a batch per unit of work; then each ticket an agent takes on is
    worked in a unit of work of its own, acting for that agent.
    """
    customers = db.session.execute(
        sa.select(Customer.id, Customer.language).order_by(Customer.id).limit(200)
    ).all()
    agents = demo_agents()
    now = utcnow()
    for first in range(0, count, batch_size):
        opened_now = []
        with unit_of_work(DEMO):
            for i in range(first, min(first + batch_size, count)):
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
                opened_now.append((ticket.id, opened, reply_zh if chinese else reply_en))
        for ticket_id, opened, reply in opened_now:
            play_demo_ticket(ticket_id, rng, agents, opened, reply, now)


DEMO_STAGES = ("new", "new", "acknowledged", "investigating", "waiting", "resolved", "closed")


def demo_agents() -> list[StaffUser]:
    """The staff who work demo tickets: agents and managers."""
    return list(db.session.scalars(sa.select(StaffUser).where(StaffUser.role.in_(["agent", "manager"]))))


def play_demo_ticket(
    ticket_id: int,
    rng: random.Random,
    agents: list[StaffUser],
    opened: datetime,
    reply: str,
    now: datetime,
    stage: str | None = None,
) -> None:
    """Move a demo ticket along its life, to `stage` or a random one: assigned, answered, resolved.

    One unit of work acting for the agent who takes it on.
    """
    stage = stage or rng.choice(DEMO_STAGES)
    if stage == "new" or not agents:
        return
    agent = rng.choice(agents)
    step = opened + timedelta(minutes=rng.randrange(5, 300))
    with unit_of_work(acting_for(agent)):
        ticket = db.session.get_one(Ticket, ticket_id)
        assign(ticket, agent, step)
        move_ticket(ticket, "acknowledged", min(step, now))
        if stage == "acknowledged":
            return
        add_message(ticket, "outbound", reply, min(step + timedelta(minutes=20), now))
        move_ticket(ticket, "investigating", min(step + timedelta(minutes=25), now))
        if stage == "waiting":
            move_ticket(ticket, "waiting_on_customer", min(step + timedelta(hours=1), now))
        elif stage in ("resolved", "closed"):
            note = "已核实 / Checked with the warehouse."
            add_message(ticket, "note", note, min(step + timedelta(hours=2), now))
            move_ticket(ticket, "resolved", min(step + timedelta(hours=3), now))
            if stage == "closed":
                move_ticket(ticket, "closed", min(step + timedelta(days=2), now))
