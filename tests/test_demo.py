"""The demo data: written through units of work, audited as the command line and the demo."""

from __future__ import annotations

import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.tickets.ticket import TicketEvent, TicketMessage
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
    assert (len(opened), set(opened)) == (12, {None})  # opened by customers
    assert worked and replies
    assert {db.session.get(StaffUser, i).role for i in worked + replies} <= {"agent", "manager"}
