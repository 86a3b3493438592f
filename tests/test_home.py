"""The home page per role: an agent's queue, the team's figures, hand-computed from built rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from insights import home
from models import db, utcnow
from models.customer import Customer
from models.loyalty.ledger import Posting, ensure_account, post_points
from models.loyalty.rewards import cancel_redemption, redeem
from models.surveys.answers import submit_response
from models.surveys.builder import Question, Survey
from models.tickets.ticket import Ticket
from models.uow import SYSTEM, Actor, unit_of_work
from models.user import Role
from tests.conftest import make_staff
from tests.factories import make_customer, make_reward, make_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 09:00 UTC is 17:00 in Shanghai: "today" there ends at 16:00 UTC.
NOW = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)


def ticket(owner=None, status="new", created=None, **fields) -> int:
    """A ticket opened at `created` (an hour before NOW), then set as the test needs."""
    opened, _code = make_ticket(now=created or NOW - timedelta(hours=1), owner_id=owner.id if owner else None)
    with unit_of_work(SYSTEM):
        row = db.session.get(Ticket, opened.id)
        row.status = status
        for name, value in fields.items():
            setattr(row, name, value)
    return opened.id


def points(customer_id: int, kind: str, n: int, at: datetime, reason: str = "purchase") -> None:
    """A ledger entry by the ledger's own function (account opened first), in the open unit of work."""
    ensure_account(customer_id)
    post_points(Posting(customer_id, kind, n, reason=reason), at)


def far(**fields):
    """Due times far away (nothing due, nothing late) unless the test says otherwise."""
    return {"first_response_due": NOW + timedelta(days=5), "resolution_due": NOW + timedelta(days=9)} | fields


# An agent's queue --------------------------------------------------------------------------------


@pytest.fixture
def agent_queue(app):
    """An agent's tickets: late, due today, due tomorrow, waiting, resolved; a colleague's; two unowned."""
    agent = make_staff(Role.AGENT)
    other = make_staff(Role.AGENT, "other.agent@test.example")
    ids = {
        "late": ticket(agent, **far(resolution_due=NOW - timedelta(hours=1))),
        "today": ticket(agent, **far(resolution_due=NOW + timedelta(hours=3))),
        "tomorrow": ticket(agent, "investigating", **far(resolution_due=NOW + timedelta(hours=10))),
        "waiting": ticket(agent, "waiting_on_customer", paused_since=NOW - timedelta(hours=2), **far()),
        "flagged": ticket(agent, **far(first_response_breached=True, first_responded_at=NOW)),
        "resolved": ticket(agent, "resolved", resolved_at=NOW, **far(resolution_due=NOW - timedelta(days=1))),
        "colleague": ticket(other, **far(resolution_due=NOW - timedelta(hours=2))),
        "unowned_late": ticket(None, **far(first_response_due=NOW - timedelta(minutes=5))),
        "unowned": ticket(None, **far()),
    }
    return agent, ids


def test_an_agents_queue_counts_open_due_today_overdue_and_waiting(agent_queue):
    """Which of an agent's tickets are open, due by midnight in their zone, overdue, waiting?"""
    agent, _ids = agent_queue
    counts = home.queue_counts(db.session(), agent.id, NOW, SHANGHAI)
    assert counts == home.QueueCounts(open=5, due_today=1, overdue=1, waiting=1, unassigned=2)


def test_due_today_ends_at_midnight_in_the_staff_members_zone(agent_queue):
    """A target at 19:00 UTC is due today in London (20:00) but tomorrow in Shanghai (03:00)."""
    agent, _ids = agent_queue
    ticket(agent, **far(resolution_due=NOW + timedelta(hours=10)))
    assert home.queue_counts(db.session(), agent.id, NOW, SHANGHAI).due_today == 1
    assert home.queue_counts(db.session(), agent.id, NOW, ZoneInfo("Europe/London")).due_today == 3


def test_what_needs_an_agent_first_is_breached_then_nearest_due_then_waiting(agent_queue):
    """In which order does an agent see their open tickets?"""
    agent, ids = agent_queue
    first = home.needs_first(db.session(), agent.id, NOW)
    assert [item.id for item in first] == [
        ids["late"],
        ids["flagged"],
        ids["today"],
        ids["tomorrow"],
        ids["waiting"],
    ]
    assert [(item.breached, item.paused) for item in first] == [
        (True, False),
        (True, False),
        (False, False),
        (False, False),
        (False, True),
    ]
    assert first[0].due == NOW - timedelta(hours=1)
    assert first[2].due == NOW + timedelta(hours=3)


def test_unassigned_tickets_come_most_urgent_first(agent_queue):
    _agent, ids = agent_queue
    assert [item.id for item in home.unassigned_first(db.session(), NOW)] == [
        ids["unowned_late"],
        ids["unowned"],
    ]


# Service -------------------------------------------------------------------------------------------


def test_sla_attainment_counts_tickets_resolved_and_answered_in_time(app):
    """Of tickets resolved / first answered in the last 30 days, how many met their target, per week?"""
    on_time = {"resolution_due": NOW - timedelta(days=1), "first_response_due": NOW - timedelta(days=3)}
    # Resolved on Tuesday 2026-06-09 (this week starts Monday 06-08): in time, answered in time.
    ticket(
        None,
        "resolved",
        resolved_at=NOW - timedelta(days=1, hours=2),
        first_responded_at=NOW - timedelta(days=4),
        **on_time,
    )
    # Resolved last week (Thursday 06-04), too late; first answer late and flagged.
    ticket(
        None,
        "closed",
        resolved_at=NOW - timedelta(days=6),
        first_responded_at=NOW - timedelta(days=6),
        resolution_due=NOW - timedelta(days=7),
        first_response_due=NOW - timedelta(days=8),
        first_response_breached=True,
    )
    # Resolved last week in time, though flagged breached on the way: not in time.
    ticket(
        None, "resolved", resolved_at=NOW - timedelta(days=5), resolution_due=NOW, resolution_breached=True
    )
    # Resolved 40 days ago: outside the 30 days, and 6 weeks back in the trend.
    ticket(None, "resolved", resolved_at=NOW - timedelta(days=40), resolution_due=NOW - timedelta(days=39))
    summary = home.sla_summary(db.session(), NOW, SHANGHAI)
    assert (summary.resolution, summary.first_response) == (home.Attainment(1, 3), home.Attainment(1, 2))
    assert summary.resolution.share == 33.3
    assert [w.start.isoformat() for w in summary.weeks[-2:]] == ["2026-06-01", "2026-06-08"]
    assert [(w.resolution.met, w.resolution.total) for w in summary.weeks[-7:]] == [
        (1, 1),  # week of 2026-04-27: the ticket resolved 2026-05-01
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 2),
        (1, 1),
    ]
    assert [w.first_response.share for w in summary.weeks[-3:]] == [
        None,
        50.0,
        None,
    ]  # both answered 06-04..06-06


def test_backlog_counts_open_tickets_by_age(app):
    """How many tickets are open, and for how long?"""
    now = utcnow()
    for age in (
        timedelta(hours=2),
        timedelta(days=2),
        timedelta(days=5),
        timedelta(days=10),
        timedelta(days=40),
        timedelta(days=50),
    ):
        ticket(None, "investigating", created=now - age, created_at=now - age)
    ticket(None, "closed", created=now - timedelta(days=60), created_at=now - timedelta(days=60))
    assert home.backlog(db.session(), now) == home.Backlog(
        6, [("lt_1d", 1), ("1_3d", 1), ("3_7d", 1), ("7_30d", 1), ("gt_30d", 2)]
    )


# Satisfaction and loyalty ----------------------------------------------------------------------------


def make_survey() -> Survey:
    survey = Survey(title="After your visit", language="en", public_link=True)
    survey.questions = [
        Question(position=1, kind="nps", prompt="Recommend us?"),
        Question(position=2, kind="rating", prompt="Satisfied?"),
    ]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def answer(survey: Survey, nps: int, rating: int, at: datetime) -> None:
    by_kind = {q.kind: q.id for q in survey.questions}
    with unit_of_work(Actor.anonymous("203.0.113.7")):
        submit_response(survey, {by_kind["nps"]: str(nps), by_kind["rating"]: str(rating)}, now=at)


def test_nps_and_csat_by_month_in_the_viewers_zone(app):
    """NPS and CSAT per calendar month, by the standard definitions, months cut in the viewer's zone."""
    survey = make_survey()
    answer(survey, 10, 5, datetime(2026, 6, 2, 3, tzinfo=UTC))
    answer(survey, 9, 2, datetime(2026, 6, 5, 3, tzinfo=UTC))
    answer(survey, 3, 4, datetime(2026, 5, 31, 20, tzinfo=UTC))  # June 1st, 04:00 in Shanghai
    answer(survey, 7, 1, datetime(2026, 5, 3, tzinfo=UTC))
    months = home.satisfaction_trend(db.session(), NOW, SHANGHAI)
    assert len(months) == 12 and months[0].start.isoformat() == "2025-07-01"
    assert [(m.start.isoformat(), m.nps_answers, m.nps, m.csat_answers, m.csat) for m in months[-2:]] == [
        ("2026-05-01", 1, 0.0, 1, 0.0),
        ("2026-06-01", 3, 33.3, 3, 66.7),
    ]
    in_utc = home.satisfaction_trend(db.session(), NOW, UTC)
    assert [(m.nps_answers, m.nps) for m in in_utc[-2:]] == [(2, -50.0), (2, 100.0)]


def test_points_issued_and_redeemed_by_month(app):
    """Points earned and adjusted up, less nothing; points redeemed, less coupons cancelled."""
    customer = make_customer()
    reward = make_reward(points_cost=100, stock=10)
    may, june = datetime(2026, 5, 20, tzinfo=UTC), datetime(2026, 6, 3, tzinfo=UTC)
    with unit_of_work(SYSTEM):
        points(customer.id, "earn", 500, may, "purchase")
        points(customer.id, "adjust", 40, may, "goodwill")
        points(customer.id, "adjust", -15, may, "correction")
        redeem(customer.id, reward.id, may)
        points(customer.id, "earn", 80, june, "purchase")
        redeem(customer.id, reward.id, june)
        second = redeem(customer.id, reward.id, june)
    with unit_of_work(SYSTEM):
        cancel_redemption(second.redemption.id, june + timedelta(hours=1))
    months = home.points_by_month(db.session(), NOW, SHANGHAI)
    assert [(m.start.isoformat(), m.issued, m.redeemed) for m in months[-3:]] == [
        ("2026-04-01", 0, 0),
        ("2026-05-01", 540, 100),
        ("2026-06-01", 80, 100),
    ]


def test_top_rewards_count_redemptions_of_the_last_90_days(app):
    customer = make_customer()
    bag = make_reward(name_en="Tote bag", name_zh="帆布袋", points_cost=10, stock=None)
    cup = make_reward(name_en="Coffee cup", name_zh="咖啡杯", points_cost=20, stock=None)
    pen = make_reward(name_en="Pen", name_zh="笔", points_cost=5, stock=None)
    with unit_of_work(SYSTEM):
        points(customer.id, "earn", 1000, NOW - timedelta(days=200), "purchase")
        for reward, days_ago in [(bag, 1), (cup, 2), (cup, 3), (pen, 100), (pen, 100), (pen, 100)]:
            redeem(customer.id, reward.id, NOW - timedelta(days=days_ago))
        cancelled = redeem(customer.id, bag.id, NOW - timedelta(days=4))
    with unit_of_work(SYSTEM):
        cancel_redemption(cancelled.redemption.id, NOW - timedelta(days=4))
    assert [(r.name_en, r.name_zh, r.redemptions, r.points) for r in home.top_rewards(db.session(), NOW)] == [
        ("Coffee cup", "咖啡杯", 2, 40),
        ("Tote bag", "帆布袋", 1, 10),
    ]


# The pages ------------------------------------------------------------------------------------------


def stat(page: str, id: str) -> str:
    match = re.search(rf'id="{id}"[^>]*>\s*(?:<div[^>]*>)?\s*([^<]*?)\s*<', page)
    assert match, id
    return match.group(1)


def test_an_agent_home_shows_their_queue_with_links_to_the_lists(client, auth):
    """Does an agent land on their queue, and do its counts lead to the matching lists?"""
    auth.login(Role.AGENT)
    agent = make_staff(Role.AGENT)
    now = utcnow()
    late = ticket(
        agent, created=now - timedelta(hours=3), resolution_due=now - timedelta(hours=1), subject="Broken zip"
    )
    ticket(
        agent,
        "waiting_on_customer",
        created=now - timedelta(hours=3),
        paused_since=now,
        subject="Needs receipt",
    )
    ticket(None, created=now - timedelta(hours=3), subject="Nobody's yet")
    page = client.get("/admin/").text
    assert "Your queue" in page and "Team overview" not in page
    counts = {
        key: re.search(rf'id="queue-{key}".*?patron-stat[^>]*>(\d+)<', page, re.S).group(1)
        for key in ("open", "overdue", "waiting")
    }
    assert counts == {"open": "2", "overdue": "1", "waiting": "1"}
    first = page.split('id="needs-first"')[1].split("</ol>")[0]
    assert first.index("Broken zip") < first.index("Needs receipt")
    assert f'href="/admin/tickets/ticket/{late}"' in first
    assert "Nobody&#39;s yet" in page.split('id="unassigned-first"')[1]

    overdue_link = re.search(r'href="([^"]+)" id="queue-overdue"', page).group(1).replace("&amp;", "&")
    overdue = client.get(overdue_link).text
    assert "Broken zip" in overdue and "Needs receipt" not in overdue
    due_link = re.search(r'href="([^"]+)" id="queue-due_today"', page).group(1).replace("&amp;", "&")
    by_due = client.get(due_link).text  # the queue, soonest resolution due first (newest first by default)
    assert due_link.startswith("/admin/tickets_mine/?sort=") and by_due.index("Broken zip") < by_due.index(
        "Needs receipt"
    )
    waiting_link = re.search(r'href="([^"]+)" id="queue-waiting"', page).group(1).replace("&amp;", "&")
    waiting = client.get(waiting_link).text
    assert "Needs receipt" in waiting and "Broken zip" not in waiting


def test_an_agent_with_an_empty_queue_is_told_what_to_do_next(client, auth):
    auth.login(Role.AGENT)
    page = client.get("/admin/").text
    assert 'id="first-empty"' in page and "Open a new ticket" in page
    assert "Every open ticket has an owner." in page


@pytest.fixture
def team_figures(app):
    """A customer with points and a redemption, a survey answer, two resolved tickets and one open."""
    customer = make_customer(name="Zhao Lingling", email="zhao.lingling@example.com")
    reward = make_reward(name_en="Tote bag", name_zh="帆布袋", points_cost=100, stock=None)
    now = utcnow()
    with unit_of_work(SYSTEM):
        points(customer.id, "earn", 300, now - timedelta(hours=1), "purchase")
        redeem(customer.id, reward.id, now - timedelta(minutes=30))
    answer(make_survey(), 10, 5, now - timedelta(minutes=20))
    ticket(
        None,
        "resolved",
        created=now - timedelta(hours=5),
        resolved_at=now - timedelta(hours=1),
        resolution_due=now,
        customer_id=customer.id,
        contact_name="Zhao Lingling",
    )
    ticket(
        None,
        "resolved",
        created=now - timedelta(hours=5),
        resolved_at=now - timedelta(hours=1),
        resolution_due=now - timedelta(hours=2),
    )
    ticket(
        None,
        "investigating",
        created=now - timedelta(hours=5),
        customer_id=customer.id,
        contact_email="zhao.lingling@example.com",
    )
    return customer


@pytest.mark.parametrize("role", [Role.MANAGER, Role.ADMIN, Role.ANALYST])
def test_the_team_home_shows_sla_backlog_scores_points_and_rewards(client, auth, team_figures, role):
    """Managers, admins and analysts see the same figures, each chart with its table of numbers."""
    auth.login(role)
    page = client.get("/admin/").text
    assert "Team overview" in page and "Your queue" not in page
    assert stat(page, "stat-sla-resolution") == "50.0%"
    assert stat(page, "stat-backlog") == "1"
    assert stat(page, "stat-nps") == "+100.0"
    assert stat(page, "stat-csat") == "100.0%"
    assert stat(page, "stat-customers") == "1"
    for chart in ("chart-sla", "chart-backlog", "chart-scores", "chart-points", "chart-rewards"):
        assert f'id="{chart}"' in page
    tables = {
        chart: page.split(f'id="{chart}"')[1].split("</table>")[0]
        for chart in ("chart-backlog", "chart-points", "chart-rewards")
    }
    assert re.search(r'<th scope="row">Under 1 day</th>\s*<td>1</td>', tables["chart-backlog"])
    assert re.search(r"<td>300</td>\s*<td>100</td>", tables["chart-points"])
    assert re.search(r'<th scope="row">Tote bag</th>\s*<td>1</td>', tables["chart-rewards"])
    assert 'canvas role="img" aria-label="Points issued and redeemed by month"' in page


def test_the_analysts_home_names_no_customer(client, auth, team_figures):
    """The analyst's home carries no customer's name or email (nor does anyone's: it shows none)."""
    auth.login(Role.ANALYST)
    page = client.get("/admin/").text
    for secret in ("Zhao", "Lingling", "zhao.lingling", "example.com"):
        assert secret not in page


def test_an_empty_team_home_says_what_is_missing(client, auth):
    auth.login(Role.MANAGER)
    page = client.get("/admin/").text
    assert "No open tickets: the backlog is clear." in page
    assert "No rewards redeemed in the last 90 days." in page
    assert "<canvas" not in page and "chart.umd.min.js" not in page


def count_queries(client, path: str) -> int:
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert client.get(path).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    return len(statements)


@pytest.mark.parametrize(("role", "limit"), [(Role.AGENT, 10), (Role.MANAGER, 15)])
def test_the_home_page_runs_a_bounded_number_of_queries(client, auth, team_figures, role, limit):
    """However many tickets, entries and answers, a home page costs the same few queries."""
    auth.login(role)
    first = count_queries(client, "/admin/")
    more = make_customer()
    with unit_of_work(SYSTEM):
        points(more.id, "earn", 50, utcnow(), "purchase")
    for _n in range(5):
        ticket(make_staff(Role.AGENT), created=utcnow() - timedelta(hours=1))
    assert count_queries(client, "/admin/") == first <= limit
    assert db.session.scalar(sa.select(sa.func.count(Customer.id))) == 2
