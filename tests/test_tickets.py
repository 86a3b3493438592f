"""Ticket rules: the workflow, SLA clocks with pauses, first response, escalation, tracking codes,
queues, owners, and the domain events a ticket raises and answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.events import (
    DetractorAnswered,
    FollowUpTicketOpened,
    TicketRated,
    TicketResolved,
    _handlers,
    handles,
)
from models.tickets.policy import BusinessCalendar
from models.tickets.ticket import (
    Ticket,
    TicketError,
    add_message,
    assign,
    close_tickets,
    due_soon_clause,
    escalate_breaches,
    find_by_tracking_code,
    mine_clause,
    move_ticket,
    overdue_clause,
    ticket_owners,
    unassigned_clause,
)
from models.uow import SYSTEM, Actor, WriteOutsideUnitOfWork, unit_of_work
from tests.conftest import make_staff
from tests.factories import audit_events, make_customer, make_ticket

MONDAY_10 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def office_hours() -> None:
    """Weekdays 09:00–18:00 Shanghai time instead of the default 24×7."""
    with unit_of_work(SYSTEM):
        calendar = db.session.scalar(sa.select(BusinessCalendar))
        calendar.timezone = "Asia/Shanghai"
        calendar.weekly_hours = json.dumps({str(day): ["09:00", "18:00"] for day in range(5)})


def move(ticket: Ticket, status: str, now: datetime | None = None, actor: Actor = SYSTEM) -> Ticket:
    with unit_of_work(actor, keep_state=True):
        move_ticket(ticket, status, now)
    return ticket


def reply(ticket: Ticket, kind: str, body: str, now: datetime) -> Ticket:
    with unit_of_work(SYSTEM, keep_state=True):
        add_message(ticket, kind, body, now)
    return ticket


@pytest.fixture
def resolved_events() -> Iterator[list[TicketResolved]]:
    """The TicketResolved events seen by a handler this test registers (and removes afterwards)."""
    seen: list[TicketResolved] = []

    @handles(TicketResolved)
    def remember(uow, event: TicketResolved) -> None:
        seen.append(event)

    yield seen
    _handlers[TicketResolved].remove(remember)


def test_reference_reads_like_t_year_number(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    assert re.fullmatch(r"T-2026-\d{6}", ticket.reference)


def test_opening_a_ticket_is_audited_with_the_actor_of_the_unit_of_work(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    (event,) = audit_events("ticket.create")
    assert (event.object_id, event.fields, event.actor) == (
        str(ticket.id),
        "channel,priority,subject",
        "system",
    )


def test_ticket_changes_need_a_unit_of_work(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    with pytest.raises(WriteOutsideUnitOfWork):
        move_ticket(ticket, "acknowledged", MONDAY_10)
    assert ticket.status == "new"


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
        move(ticket, status, MONDAY_10 + timedelta(minutes=minutes), Actor.staff(agent))
    history = [(e.from_value, e.to_value, e.actor_id) for e in ticket.events if e.kind == "status"]
    assert history[0] == (None, "new", None)
    assert [h[1] for h in history[1:]] == steps
    assert all(h[2] == agent.id for h in history[1:])
    assert ticket.closed_at == MONDAY_10 + timedelta(minutes=6)
    audited = [(e.detail, e.actor, e.actor_id) for e in audit_events("ticket.status")]
    assert audited == [(status, agent.email, agent.id) for status in steps]


@pytest.mark.parametrize(
    "path, illegal",
    [([], "new"), (["resolved"], "waiting_on_customer"), (["closed"], "resolved"), (["closed"], "closed")],
)
def test_an_illegal_move_is_refused_and_changes_nothing(app, path, illegal):
    ticket, _ = make_ticket(now=MONDAY_10)
    for status in path:
        move(ticket, status, MONDAY_10)

    def state() -> tuple:
        return ticket.status, len(ticket.events), ticket.updated_at, len(audit_events("ticket.status"))

    before = state()
    with pytest.raises(TicketError), unit_of_work(SYSTEM, keep_state=True):
        move_ticket(ticket, illegal, MONDAY_10 + timedelta(hours=1))
    db.session.expire_all()
    assert state() == before


def test_reopening_a_closed_ticket_runs_the_clock_again(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    move(ticket, "closed", MONDAY_10 + timedelta(hours=1))
    move(ticket, "investigating", MONDAY_10 + timedelta(hours=2))
    assert ticket.is_open and ticket.closed_at is None and ticket.resolved_at is None


def test_waiting_on_the_customer_pauses_the_clock(app):
    office_hours()
    ticket, _ = make_ticket(now=MONDAY_10, priority="normal")
    due = ticket.resolution_due
    move(ticket, "waiting_on_customer", MONDAY_10 + timedelta(hours=1))  # Mon 11:00
    later = MONDAY_10 + timedelta(days=5)  # Saturday 10:00: long past the first due time
    assert not ticket.overdue(later)
    assert db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(overdue_clause(later))) == 0
    move(ticket, "investigating", MONDAY_10 + timedelta(days=1, hours=1))  # Tue 11:00
    # Paused Mon 11–18 (7h) and Tue 9–11 (2h): the due time moves 9 business hours later.
    assert ticket.paused_seconds == 9 * 3600
    assert ticket.resolution_due == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # Thu 16:00
    assert ticket.resolution_due > due


def test_the_first_reply_to_the_customer_stamps_the_first_response(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    reply(ticket, "note", "checking stock", MONDAY_10 + timedelta(minutes=5))
    assert ticket.first_responded_at is None
    reply(ticket, "outbound", "On its way!", MONDAY_10 + timedelta(minutes=30))
    reply(ticket, "outbound", "Delivered?", MONDAY_10 + timedelta(hours=3))
    assert ticket.first_responded_at == MONDAY_10 + timedelta(minutes=30)
    assert not ticket.first_response_breached
    assert [e.detail for e in audit_events("ticket.message")] == ["note", "outbound", "outbound"]


def test_a_late_first_reply_is_flagged(app):
    ticket, _ = make_ticket(now=MONDAY_10, priority="urgent")  # 30 minutes
    reply(ticket, "outbound", "Sorry for the wait", MONDAY_10 + timedelta(hours=1))
    assert ticket.first_response_breached


def test_empty_messages_are_refused(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    with pytest.raises(TicketError):
        reply(ticket, "outbound", "   ", MONDAY_10)


def test_escalation_flags_breaches_raises_priority_and_runs_once(app):
    late, _ = make_ticket(now=MONDAY_10, priority="normal")
    on_time, _ = make_ticket(now=MONDAY_10 + timedelta(hours=4), priority="normal")
    paused, _ = make_ticket(now=MONDAY_10, priority="normal")
    move(paused, "waiting_on_customer", MONDAY_10 + timedelta(minutes=1))
    at = MONDAY_10 + timedelta(hours=5)
    with unit_of_work(Actor.system("job:escalate-sla")):
        assert escalate_breaches(at) == {late.reference: "high"}  # normal escalates to high by default
    db.session.expire_all()
    assert late.first_response_breached and not late.resolution_breached
    assert late.priority == "high"
    assert [e.kind for e in late.events][-2:] == ["breach", "priority"]
    assert on_time.priority == "normal" and not on_time.first_response_breached
    with unit_of_work(SYSTEM):
        assert escalate_breaches(at + timedelta(minutes=1)) == {}
    audited = [(e.object_id, e.fields, e.actor) for e in audit_events("ticket.escalate")]
    assert audited == [(str(late.id), "breach,priority", "job:escalate-sla")]


def test_escalate_sla_command_reports_what_it_did(app, runner):
    ticket, _ = make_ticket(now=datetime(2020, 1, 1, tzinfo=UTC), priority="low")
    result = runner.invoke(args=["escalate-sla"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{ticket.reference}: breached, priority now normal\n1 tickets escalated.\n"
    assert [e.object_id for e in audit_events("ticket.escalate")] == [str(ticket.id)]


def test_tracking_codes_are_long_random_and_forgiving_about_format(app):
    ticket, code = make_ticket(now=MONDAY_10)
    other, other_code = make_ticket(now=MONDAY_10)
    assert code != other_code and len(code.replace("-", "")) == 16  # 80 bits of Crockford base32
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
    from models.tickets.policy import parse_weekly_hours

    assert parse_weekly_hours('{"5": ["10:00", "16:00"]}') == {5: (time(10), time(16))}
    assert parse_weekly_hours("") is None


# Queues and owners ------------------------------------------------------------------------------


def test_queues_select_the_right_tickets(app):
    agent = make_staff("agent")
    now = MONDAY_10 + timedelta(days=3)
    overdue, _ = make_ticket(now=MONDAY_10, subject="overdue")
    due_soon, _ = make_ticket(now=now - timedelta(hours=3), subject="due soon")  # 4h reply target
    mine, _ = make_ticket(now=now, subject="mine", owner_id=agent.id)
    done, _ = make_ticket(now=now, subject="done")
    move(done, "resolved", now)

    def queue(clause) -> list[str]:
        return list(db.session.scalars(sa.select(Ticket.subject).where(clause).order_by(Ticket.id)))

    assert queue(overdue_clause(now)) == ["overdue"]
    assert queue(due_soon_clause(now)) == ["due soon"]
    assert queue(mine_clause(agent.id)) == ["mine"]
    assert queue(unassigned_clause()) == ["overdue", "due soon"]


def test_only_active_staff_with_the_ticket_work_right_may_own_tickets(app):
    agent = make_staff("agent")
    manager = make_staff("manager")
    make_staff("analyst")
    retired = make_staff("agent", "retired@test.example")
    with unit_of_work(SYSTEM):
        db.session.get(type(retired), retired.id).active = False
    assert [u.email for u in ticket_owners()] == [agent.email, manager.email]


@pytest.mark.parametrize("who", ["analyst", "retired"])
def test_assigning_a_ticket_to_someone_who_may_not_own_it_is_refused(app, who):
    owner = make_staff("analyst") if who == "analyst" else make_staff("agent", "retired@test.example")
    if who == "retired":
        with unit_of_work(SYSTEM):
            db.session.get(type(owner), owner.id).active = False
    ticket, _ = make_ticket(now=MONDAY_10)
    with pytest.raises(TicketError, match="cannot own tickets"), unit_of_work(SYSTEM):
        assign(db.session.get(Ticket, ticket.id), db.session.get(type(owner), owner.id))
    db.session.expire_all()
    assert ticket.owner_id is None and audit_events("ticket.edit") == []


# Domain events -----------------------------------------------------------------------------------


def test_move_ticket_to_resolved_raises_ticket_resolved(app, resolved_events):
    customer = make_customer()
    ticket, _ = make_ticket(now=MONDAY_10, customer_id=customer.id)
    move(ticket, "investigating", MONDAY_10 + timedelta(hours=1))
    assert resolved_events == []
    move(ticket, "resolved", MONDAY_10 + timedelta(hours=2))
    assert resolved_events == [TicketResolved(ticket.id, customer.id, MONDAY_10 + timedelta(hours=2))]
    move(ticket, "closed", MONDAY_10 + timedelta(hours=3))  # already resolved: no second event
    assert len(resolved_events) == 1


def test_closing_open_tickets_in_bulk_raises_ticket_resolved_for_each(app, resolved_events):
    first, _ = make_ticket(now=MONDAY_10)
    second, _ = make_ticket(now=MONDAY_10)
    already, _ = make_ticket(now=MONDAY_10)
    move(already, "resolved", MONDAY_10 + timedelta(minutes=1))
    resolved_events.clear()
    at = MONDAY_10 + timedelta(hours=1)
    with unit_of_work(SYSTEM):
        closed, skipped = close_tickets([first, second, already], at)
    assert (len(closed), skipped) == (3, 0)
    assert resolved_events == [TicketResolved(first.id, None, at), TicketResolved(second.id, None, at)]


def test_a_failing_reaction_to_a_resolution_keeps_neither_the_move_nor_its_audit_event(app):
    ticket, _ = make_ticket(now=MONDAY_10)

    @handles(TicketResolved)
    def refuse(uow, event) -> None:
        raise RuntimeError("the reaction failed")

    try:
        with pytest.raises(RuntimeError, match="the reaction failed"), unit_of_work(SYSTEM):
            move_ticket(db.session.get(Ticket, ticket.id), "resolved", MONDAY_10)
    finally:
        _handlers[TicketResolved].remove(refuse)
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).status == "new"
    assert audit_events("ticket.status") == []


def detractor_answered(customer_id: int | None, response_id: int = 41) -> DetractorAnswered:
    return DetractorAnswered(
        response_id=response_id,
        survey_id=7,
        survey_title="售后回访",
        customer_id=customer_id,
        language="zh_Hans_CN",
        scores="NPS 2, CSAT 1",
        comment="Which part disappointed you?\nThe courier was rude.",
        at=MONDAY_10,
    )


def test_a_detractors_answer_opens_one_high_priority_follow_up_ticket(app):
    customer = make_customer()
    with unit_of_work(Actor.anonymous("203.0.113.9")) as uow:
        uow.emit(detractor_answered(customer.id))
    (ticket,) = db.session.scalars(sa.select(Ticket)).all()
    assert (ticket.customer_id, ticket.priority, ticket.channel, ticket.category.code) == (
        customer.id,
        "high",
        "web",
        "complaint",
    )
    assert ticket.subject == "调查跟进：售后回访（NPS 2, CSAT 1）"  # in the survey's language
    (note,) = [m for m in ticket.messages if m.kind == "note"]
    assert (
        note.body
        == "调查“售后回访”中出现低分：NPS 2, CSAT 1。\n\nWhich part disappointed you?\nThe courier was rude."
    )
    followed = [e for e in uow.handled if isinstance(e, FollowUpTicketOpened)]
    assert followed == [FollowUpTicketOpened(response_id=41, ticket_id=ticket.id)]
    assert [
        (e.action, e.actor) for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
    ] == [("ticket.create", "anonymous")]  # the note goes in with the ticket


def test_a_rating_of_a_ticket_is_stored_on_it(app):
    ticket, _ = make_ticket(now=MONDAY_10)
    with unit_of_work(SYSTEM) as uow:
        uow.emit(TicketRated(ticket_id=ticket.id, score=2, at=MONDAY_10 + timedelta(days=1)))
    db.session.expire_all()
    assert (ticket.csat_score, ticket.csat_at) == (2, MONDAY_10 + timedelta(days=1))
