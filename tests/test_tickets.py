"""Ticket rules: the workflow, SLA clocks with pauses, first response, escalation, tracking codes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.sla_policy import BusinessCalendar
from models.ticket import (
    Ticket,
    TicketError,
    add_message,
    escalate_breaches,
    find_by_tracking_code,
    overdue_clause,
    transition,
)
from tests.conftest import make_staff
from tests.factories import make_ticket

MONDAY_10 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def office_hours() -> None:
    """Weekdays 09:00–18:00 Shanghai time instead of the default 24×7."""
    calendar = db.session.scalar(sa.select(BusinessCalendar))
    calendar.timezone = "Asia/Shanghai"
    calendar.weekly_hours = json.dumps({str(day): ["09:00", "18:00"] for day in range(5)})
    db.session.commit()


def test_reference_reads_like_t_year_number(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    assert re.fullmatch(r"T-2026-\d{6}", ticket.reference)


def test_due_times_follow_the_priority_policy_round_the_clock(app):
    ticket, _ = make_ticket(now=MONDAY_10, priority="high")
    assert ticket.first_response_due == MONDAY_10 + timedelta(hours=1)
    assert ticket.resolution_due == MONDAY_10 + timedelta(hours=8)


def test_due_times_respect_business_hours(app):
    office_hours()
    ticket, _ = make_ticket(now=MONDAY_10, priority="normal")  # 4h reply, 24h resolution
    assert ticket.first_response_due == MONDAY_10 + timedelta(hours=4)
    # 24 business hours from Monday 10:00 = Monday 8h + Tuesday 9h + Wednesday 7h → Wed 16:00.
    assert ticket.resolution_due.astimezone(UTC) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_every_legal_move_is_recorded_with_who_and_when(app):
    agent = make_staff("agent")
    ticket, _ = make_ticket(now=MONDAY_10)
    steps = ["acknowledged", "investigating", "waiting_on_customer", "investigating", "resolved", "closed"]
    for minutes, status in enumerate(steps, start=1):
        transition(ticket, status, agent, MONDAY_10 + timedelta(minutes=minutes))
    db.session.commit()
    history = [(e.from_value, e.to_value, e.actor_id) for e in ticket.events if e.kind == "status"]
    assert history[0] == (None, "new", None)
    assert [h[1] for h in history[1:]] == steps
    assert all(h[2] == agent.id for h in history[1:])
    assert ticket.closed_at == MONDAY_10 + timedelta(minutes=6)


@pytest.mark.parametrize(
    "path, illegal",
    [([], "new"), (["resolved"], "waiting_on_customer"), (["closed"], "resolved"), (["closed"], "closed")],
)
def test_an_illegal_move_is_refused_and_changes_nothing(app, path, illegal):
    ticket, _ = make_ticket(now=MONDAY_10)
    for status in path:
        transition(ticket, status, None, MONDAY_10)
    db.session.commit()
    before = (ticket.status, len(ticket.events), ticket.updated_at)
    with pytest.raises(TicketError):
        transition(ticket, illegal, None, MONDAY_10 + timedelta(hours=1))
    assert (ticket.status, len(ticket.events), ticket.updated_at) == before


def test_reopening_a_closed_ticket_runs_the_clock_again(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    transition(ticket, "closed", None, MONDAY_10 + timedelta(hours=1))
    transition(ticket, "investigating", None, MONDAY_10 + timedelta(hours=2))
    assert ticket.is_open and ticket.closed_at is None and ticket.resolved_at is None


def test_waiting_on_the_customer_pauses_the_clock(app):
    office_hours()
    ticket, _ = make_ticket(now=MONDAY_10, priority="normal")
    due = ticket.resolution_due
    transition(ticket, "waiting_on_customer", None, MONDAY_10 + timedelta(hours=1))  # Mon 11:00
    later = MONDAY_10 + timedelta(days=5)  # Saturday 10:00: long past the first due time
    assert not ticket.overdue(later)
    assert db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(overdue_clause(later))) == 0
    transition(ticket, "investigating", None, MONDAY_10 + timedelta(days=1, hours=1))  # Tue 11:00
    # Paused Mon 11–18 (7h) and Tue 9–11 (2h): the due time moves 9 business hours later.
    assert ticket.paused_seconds == 9 * 3600
    assert ticket.resolution_due == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # Thu 16:00
    assert ticket.resolution_due > due


def test_the_first_reply_to_the_customer_stamps_the_first_response(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    add_message(ticket, "note", "checking stock", None, MONDAY_10 + timedelta(minutes=5))
    assert ticket.first_responded_at is None
    add_message(ticket, "outbound", "On its way!", None, MONDAY_10 + timedelta(minutes=30))
    add_message(ticket, "outbound", "Delivered?", None, MONDAY_10 + timedelta(hours=3))
    assert ticket.first_responded_at == MONDAY_10 + timedelta(minutes=30)
    assert not ticket.first_response_breached


def test_a_late_first_reply_is_flagged(app):
    ticket, _ = make_ticket(now=MONDAY_10, priority="urgent")  # 30 minutes
    add_message(ticket, "outbound", "Sorry for the wait", None, MONDAY_10 + timedelta(hours=1))
    assert ticket.first_response_breached


def test_empty_messages_are_refused(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    with pytest.raises(TicketError):
        add_message(ticket, "outbound", "   ", None, MONDAY_10)


def test_escalation_flags_breaches_raises_priority_and_runs_once(app):
    late, _ = make_ticket(now=MONDAY_10, priority="normal")
    on_time, _ = make_ticket(now=MONDAY_10 + timedelta(hours=4), priority="normal")
    paused, _ = make_ticket(now=MONDAY_10, priority="normal")
    transition(paused, "waiting_on_customer", None, MONDAY_10 + timedelta(minutes=1))
    db.session.commit()
    at = MONDAY_10 + timedelta(hours=5)
    assert escalate_breaches(at) == [late]
    db.session.commit()
    assert late.first_response_breached and not late.resolution_breached
    assert late.priority == "high"  # normal escalates to high by default
    assert [e.kind for e in late.events][-2:] == ["breach", "priority"]
    assert on_time.priority == "normal" and not on_time.first_response_breached
    assert escalate_breaches(at + timedelta(minutes=1)) == []
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "ticket.escalate")) == 1


def test_escalate_sla_command_reports_what_it_did(app, runner):
    make_ticket(now=datetime(2020, 1, 1, tzinfo=UTC), priority="low")
    result = runner.invoke(args=["escalate-sla"])
    assert result.exit_code == 0, result.output
    assert "1 tickets escalated" in result.output and "priority now normal" in result.output


def test_tracking_codes_are_long_random_and_forgiving_about_format(app):
    ticket, code = make_ticket(now=MONDAY_10)
    other, other_code = make_ticket(now=MONDAY_10)
    assert code != other_code and len(code.replace("-", "")) == 40  # 160 bits of hex
    assert find_by_tracking_code(code).id == ticket.id
    assert find_by_tracking_code(code.lower().replace("-", " ")).id == ticket.id
    assert find_by_tracking_code(code[:-1] + ("0" if code[-1] != "0" else "1")) is None
    assert find_by_tracking_code("T-2026-000001") is None


def test_tracking_code_is_stored_sealed(app):
    ticket, code = make_ticket(now=MONDAY_10)
    stored = db.session.execute(sa.text("SELECT tracking_code, tracking_bidx FROM ticket")).one()
    assert code not in stored[0] and code.replace("-", "") not in stored[1]


@pytest.mark.parametrize(
    "hours, message",
    [('{"9": ["09:00", "18:00"]}', "weekdays run from 0"), ('{"1": 9}', "opening hours must look like")],
)
def test_office_hours_setting_rejects_nonsense(app, client, auth, hours, message):
    from tests.conftest import csrf_token

    auth.login("admin")
    url = "/admin/business_hours/edit/?id=1"
    page = client.get(url)
    data = {"csrf_token": csrf_token(page.text), "timezone": "Asia/Shanghai", "weekly_hours": hours}
    response = client.post(url, data=data)
    assert response.status_code == 200
    assert message in response.text
    assert db.session.scalar(sa.select(BusinessCalendar.weekly_hours)) == ""


def test_time_values_in_opening_hours_parse(app):
    from models.sla_policy import parse_weekly_hours

    assert parse_weekly_hours('{"5": ["10:00", "16:00"]}') == {5: (time(10), time(16))}
    assert parse_weekly_hours("") is None
