"""Demo tickets: opened by customers, worked by the demo agents, in both languages."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from demo.actor import DEMO, acting_for
from models import db, utcnow
from models.customer import Customer
from models.tickets.attachments import check_upload
from models.tickets.canned import CannedReply
from models.tickets.feedback import subject_from_message
from models.tickets.policy import policy_for
from models.tickets.ticket import (
    CHANNELS,
    NewTicket,
    Ticket,
    TicketMessage,
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


HISTORY_WEEKS = 12
LATE_SHARE = 0.15  # of first replies made after their due time
CURRENT_STAGES = ("new", "new", "acknowledged", "investigating", "investigating", "waiting", "resolved")
# When the demo agent's tickets in hand fall due: later today (parts of what is left of the day
# in the team's time zone) and in the next three days.
AGENT_DUE_TODAY = (0.35, 0.7)
AGENT_DUE_DAYS = (1, 2, 3)


def seed_demo_tickets(count: int, rng: random.Random, batch_size: int = 200) -> None:
    """Tickets in every state, in both languages, with threads and history.

    `count` tickets of the last two weeks (the work in hand: some overdue, a few of the demo
    agent's due later today and in the next days), and as many more resolved over the past
    twelve weeks, most within their SLA targets, about one in six late, in every week.
    Customers open them, a batch per unit of work; then each ticket an agent takes on is
    worked in a unit of work of its own, acting for that agent.
    """
    customers = db.session.execute(
        sa.select(Customer.id, Customer.language).order_by(Customer.id).limit(200)
    ).all()
    agents = demo_agents()
    agent = demo_agent(agents)
    now = utcnow()
    plan = [Plan.current(i, rng, now) for i in range(count)]
    plan += [Plan.history(i, rng, now) for i in range(count)]
    if agent is not None:
        for plan_item, due in zip(
            plan[:count], agent_due_times(now, current_app.config["DEFAULT_TIMEZONE"]), strict=False
        ):
            plan_item.take_for(agent, due)
    for first in range(0, len(plan), batch_size):
        opened_now = []
        with unit_of_work(DEMO):
            for n, item in enumerate(plan[first : first + batch_size], start=first):
                category, priority, zh, en, reply_zh, reply_en = DEMO_TICKETS[item.index % len(DEMO_TICKETS)]
                # The first tickets are the first customer's: one demo page with all of it.
                customer = customers[0] if customers and n in (0, count) else None
                if customer is None and customers:
                    customer = rng.choice(customers)
                chinese = customer is None or customer.language == "zh_Hans_CN"
                subject, message = zh if chinese else en
                channel = rng.choice(CHANNELS)
                # As the public form does: a web ticket is summed up from the message (sealed).
                summary = subject_from_message(message, "") if channel == "web" else None
                priority = item.priority or priority
                ticket, _code = open_ticket(
                    NewTicket(
                        subject=subject,
                        channel=channel,
                        summary=summary,
                        priority=priority,
                        category=category_by_code(category),
                        customer_id=customer.id if customer else None,
                        first_message=message,
                    ),
                    now=item.opened_at(priority),
                )
                opened_now.append((ticket.id, ticket.created_at, reply_zh if chinese else reply_en, item))
        for ticket_id, opened, reply, item in opened_now:
            play_demo_ticket(
                ticket_id,
                rng,
                agents,
                opened,
                reply,
                now,
                item.stage,
                late=item.late,
                resolve_share=item.resolve_share,
                agent=item.agent,
            )
    seed_demo_canned_replies()
    seed_demo_attachments(rng, agents)


class Plan:
    """When a demo ticket is opened, how far it goes, and whether it misses its targets."""

    def __init__(self, index: int, stage: str, late: bool, resolve_share: float) -> None:
        self.index, self.stage, self.late, self.resolve_share = index, stage, late, resolve_share
        self.priority: str | None = None  # the demo text's own priority
        self.agent: StaffUser | None = None
        self.resolved_by: datetime | None = None  # history: resolved then
        self.opened: datetime | None = None  # work in hand: opened then
        self.due: datetime | None = None  # the demo agent's: resolution due then

    @classmethod
    def current(cls, index: int, rng: random.Random, now: datetime) -> Plan:
        """Work in hand: opened in the last two weeks, most lately, in any state; older ones overdue."""
        plan = cls(index, rng.choice(CURRENT_STAGES), rng.random() < LATE_SHARE, rng.uniform(0.3, 0.9))
        hours = min(rng.expovariate(1 / 36), 24 * 14)  # most came in the last day or two
        plan.opened = now - timedelta(hours=1 + hours, minutes=rng.randrange(60))
        return plan

    @classmethod
    def history(cls, index: int, rng: random.Random, now: datetime) -> Plan:
        """Resolved (or closed) in week `index % 12` back from now; every sixth of a week's late."""
        week, nth = index % HISTORY_WEEKS, index // HISTORY_WEEKS
        late = nth % 6 == 2
        share = rng.uniform(1.15, 2.0) if late else rng.uniform(0.3, 0.9)
        plan = cls(index, rng.choice(("resolved", "resolved", "closed")), late, share)
        plan.resolved_by = now - timedelta(days=7 * week + rng.uniform(0.1, 6.8))
        return plan

    def take_for(self, agent: StaffUser, due: datetime) -> None:
        """The demo agent's, answered in time, its resolution due at `due`."""
        self.agent, self.due, self.stage, self.late = agent, due, "investigating", False
        self.priority = "normal" if due - utcnow() < timedelta(hours=20) else "low"

    def opened_at(self, priority: str) -> datetime:
        minutes = timedelta(minutes=policy_for(priority).resolution_minutes)
        if self.due is not None:
            return self.due - minutes
        if self.resolved_by is not None:
            return self.resolved_by - minutes * self.resolve_share
        assert self.opened is not None
        return self.opened


def agent_due_times(now: datetime, zone_name: str) -> list[datetime]:
    """Later today in the team's zone (if an hour of the day is left), then one to three days on."""
    zone = ZoneInfo(zone_name)
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), zone).astimezone(UTC)
    left = midnight - now
    today = [now + left * share for share in AGENT_DUE_TODAY] if left > timedelta(hours=1) else []
    return today + [now + timedelta(days=days, hours=-2) for days in AGENT_DUE_DAYS]


def demo_agent(agents: list[StaffUser]) -> StaffUser | None:
    """The demo agent (agent@patron.local), or any agent."""
    ordered = sorted(agents, key=lambda a: (a.email != "agent@patron.local", a.role != "agent", a.id))
    return ordered[0] if ordered and ordered[0].role == "agent" else None


# (title, language, body): what the team answers most often, in both languages.
DEMO_CANNED_REPLIES = [
    (
        "Apology: parcel delayed",
        "en",
        "Dear {customer_name},\n\nWe are sorry your parcel is late. We have chased the courier and "
        "will send you the tracking number today. Your reference is {ticket_number}.",
    ),
    (
        "Refund approved",
        "en",
        "Dear {customer_name},\n\nYour refund has been approved and will reach your account within "
        "3–5 working days.",
    ),
    (
        "Thanks for the feedback",
        "en",
        "Thank you for taking the time to tell us. We have passed your message to the team.",
    ),
    (
        "物流延迟致歉",
        "zh_Hans_CN",
        "{customer_name}您好：\n\n非常抱歉包裹延误，我们已催促物流，今天内会把单号发给您。工单号：{ticket_number}。",
    ),
    ("退款已批准", "zh_Hans_CN", "{customer_name}您好：\n\n您的退款已批准，预计 3–5 个工作日到账。"),
    ("感谢反馈", "zh_Hans_CN", "感谢您抽空反馈，我们已转给相关团队跟进。"),
]


def seed_demo_canned_replies() -> None:
    """The team's canned replies in English and Chinese (once)."""
    if db.session.scalar(sa.select(CannedReply.id).limit(1)) is not None:
        return
    with unit_of_work(DEMO) as uow:
        for title, language, body in DEMO_CANNED_REPLIES:
            uow.add(CannedReply(title=title, language=language, body=body, active=True))


def demo_png(width: int = 64, height: int = 40) -> bytes:
    """A small PNG (a blue-grey "photo" with a stripe), made here: the demo ships no binaries."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((200, 80, 60) if 16 <= y < 24 else (90, 120, 160)) for _x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def demo_pdf(text: str = "Delivery note 2026-11-28") -> bytes:
    """A one-page PDF holding a line of text, with a correct cross-reference table."""
    stream = f"BT /F1 14 Tf 40 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def demo_call_notes() -> bytes:
    """A short text file, in both languages."""
    return "Called 14:05, no answer.\n14:30 回电，客户同意退货。\n".encode()


# (file name, what makes its bytes, the note it comes with)
DEMO_FILES: list[tuple[str, Callable[[], bytes], str]] = [
    ("photo of the damage.png", demo_png, "附上破损照片 / Photo of the damage attached."),
    ("delivery-note.pdf", demo_pdf, "物流签收单 / The courier's delivery note."),
    ("call notes.txt", demo_call_notes, "通话记录 / Call notes."),
]


def seed_demo_attachments(rng: random.Random, agents: list[StaffUser], count: int = 6) -> None:
    """A few internal notes with files (a photo, a PDF, a text file) on answered demo tickets."""
    if not agents:
        return
    answered = db.session.scalars(
        sa.select(TicketMessage.ticket_id)
        .where(TicketMessage.kind == "outbound")
        .distinct()
        .order_by(TicketMessage.ticket_id)
        .limit(count)
    ).all()
    for i, ticket_id in enumerate(answered):
        name, make, note = DEMO_FILES[i % len(DEMO_FILES)]
        agent = rng.choice(agents)
        with unit_of_work(acting_for(agent)):
            ticket = db.session.get_one(Ticket, ticket_id)
            add_message(ticket, "note", note, files=[check_upload(name, make())])


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
    *,
    late: bool | None = None,
    resolve_share: float | None = None,
    agent: StaffUser | None = None,
) -> None:
    """Move a demo ticket along its life, to `stage` or a random one: assigned, answered, resolved.

    Replies and resolutions come at a share of the time the ticket's SLA targets allow: within
    them, or (`late`, else one in LATE_SHARE) after them. One unit of work acting for the agent
    who takes it on.
    """
    stage = stage or rng.choice(DEMO_STAGES)
    if stage == "new" or not agents:
        return
    agent = agent or rng.choice(agents)
    late = rng.random() < LATE_SHARE if late is None else late
    with unit_of_work(acting_for(agent)):
        ticket = db.session.get_one(Ticket, ticket_id)
        reply_at = _share_of(
            opened, ticket.first_response_due, rng.uniform(1.2, 2.0) if late else rng.uniform(0.2, 0.85)
        )
        taken_at = min(opened + (reply_at - opened) / 2, now)
        assign(ticket, agent, taken_at)
        move_ticket(ticket, "acknowledged", taken_at)
        if stage == "acknowledged":
            return
        add_message(ticket, "outbound", reply, min(reply_at, now))
        move_ticket(ticket, "investigating", min(reply_at + timedelta(minutes=5), now))
        if stage == "waiting":
            move_ticket(ticket, "waiting_on_customer", min(reply_at + timedelta(hours=1), now))
        elif stage in ("resolved", "closed"):
            share = resolve_share if resolve_share is not None else rng.uniform(0.3, 0.9)
            resolved_at = max(
                _share_of(opened, ticket.resolution_due, share), reply_at + timedelta(minutes=30)
            )
            note = "已核实 / Checked with the warehouse."
            add_message(ticket, "note", note, min(reply_at + (resolved_at - reply_at) * 0.7, now))
            move_ticket(ticket, "resolved", min(resolved_at, now))
            if stage == "closed":
                move_ticket(ticket, "closed", min(resolved_at + timedelta(days=2), now))


def _share_of(opened: datetime, due: datetime | None, share: float) -> datetime:
    """A moment `share` of the way from opening to a due time (an hour's worth without one)."""
    span = (due - opened) if due is not None else timedelta(hours=1)
    return opened + span * share
