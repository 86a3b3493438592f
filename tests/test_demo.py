"""The demo data: written through units of work, audited as the command line and the demo."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from demo.loyalty import DEMO_REWARDS
from insights import home
from models import db, utcnow
from models.audit import AuditEvent
from models.customer import Customer
from models.loyalty.purchases import Purchase
from models.loyalty.rewards import Redemption
from models.tickets.ticket import Ticket, TicketEvent, TicketMessage
from models.user import StaffUser
from tests.factories import audit_events


def test_bootstrap_and_its_demo_data_are_audited_as_the_command_line_and_the_demo(runner, app):
    args = ["bootstrap", "--demo", "--customers", "5", "--tickets", "6", "--buyers", "3", "--responses", "0"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    (admin_created,) = [e for e in audit_events("staff.create") if e.actor == "cli"]
    assert db.session.get(StaffUser, int(admin_created.object_id)).email == "admin@patron.local"
    assert set(db.session.scalars(sa.select(AuditEvent.actor).distinct())) == {"cli", "demo"}


def test_demo_tickets_are_worked_by_the_demo_agents(runner, app):
    result = runner.invoke(args=["seed-demo", "--customers", "5", "--tickets", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    opened = db.session.scalars(sa.select(TicketEvent.actor_id).where(TicketEvent.to_value == "new")).all()
    worked = db.session.scalars(sa.select(TicketEvent.actor_id).where(TicketEvent.to_value != "new")).all()
    replies = db.session.scalars(
        sa.select(TicketMessage.author_id).where(TicketMessage.kind == "outbound")
    ).all()
    # Opened by customers: the 12 in hand and as many resolved over the past twelve weeks.
    assert (len(opened), set(opened)) == (24, {None})
    assert worked and replies
    assert {db.session.get(StaffUser, i).role for i in worked + replies} <= {"agent", "manager"}


def test_demo_data_fills_the_home_pages_and_a_customers_page(runner, app):
    """Redemptions over the year, every reward lately, the demo agent's work due today and on the
    next days (and some overdue), SLA attainment in most weeks well above zero and below 100%."""
    args = ["seed-demo", "--customers", "60", "--tickets", "60", "--buyers", "60", "--seed", "5"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    session, now, zone = db.session(), utcnow(), ZoneInfo("Asia/Shanghai")
    months = [m for m in home.points_by_month(session, now, zone) if m.redeemed]
    assert len(months) >= 6
    assert len(home.top_rewards(session, now)) == len(DEMO_REWARDS) == 5
    agent = db.session.scalars(sa.select(StaffUser).where(StaffUser.email == "agent@patron.local")).one()
    queue = home.queue_counts(session, agent.id, now, zone)
    local = now.astimezone(zone)
    left = datetime.combine(local.date() + timedelta(days=1), time(0), zone) - local
    assert queue.due_today >= (2 if left > timedelta(hours=1) else 0)
    assert queue.overdue > 0
    due_soon = db.session.scalars(
        sa.select(Ticket.resolution_due).where(
            Ticket.owner_id == agent.id,
            Ticket.status == "investigating",
            Ticket.resolution_due > now + timedelta(hours=12),
            Ticket.resolution_due < now + timedelta(days=3),
        )
    ).all()
    assert len(due_soon) >= 3  # one, two and three days on
    weeks = home.sla_summary(session, now, zone).weeks
    shares = [w.resolution.share for w in weeks if w.resolution.total]
    assert len(shares) == 12
    assert sum(70 <= share <= 95 for share in shares) >= 6, shares
    assert 70 <= 100 * sum(w.resolution.met for w in weeks) / sum(w.resolution.total for w in weeks) <= 95
    # The first customer's page has something of everything.
    first = db.session.scalar(sa.select(sa.func.min(Customer.id)))
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id)).where(Purchase.customer_id == first)) >= 18
    assert db.session.scalar(sa.select(sa.func.count(Redemption.id)).where(Redemption.customer_id == first))
    assert db.session.scalar(
        sa.select(sa.func.count(TicketMessage.id))
        .join(Ticket, Ticket.id == TicketMessage.ticket_id)
        .where(Ticket.customer_id == first)
    )
