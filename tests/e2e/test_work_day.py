"""A day's work from the home page, in Chromium, through the pages only: no address typed after sign-in.

An agent finds a customer by a phone number typed as people say it, opens their ticket from the
customer's page, answers with a canned reply and resolves it; a manager reads the team's figures,
finds a customer by member number, redeems a reward and adjusts points. Each step is photographed
into tests/e2e/screenshots/ (kept by CI as artefacts, ignored by git).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_babel import force_locale, gettext
from playwright.sync_api import Page, expect

from models import db, utcnow
from models.loyalty.ledger import LoyaltyAccount, PointsEntry
from models.loyalty.rewards import Redemption, redeem
from models.tickets.canned import CannedReply
from models.tickets.ticket import Ticket, move_ticket
from models.uow import SYSTEM, unit_of_work
from models.user import Role, StaffUser, set_preferences
from tests.conftest import make_staff
from tests.e2e.conftest import settle
from tests.factories import make_customer, make_reward, make_ticket
from tests.test_home import answer, make_survey, points, ticket

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).parent / "screenshots"

PHONE = "+8613800138000"
PHONE_AS_SAID = "138 0013 8000"  # the same number, as a customer reads it out
CANNED_BODY = "Dear {customer_name}, your parcel left our warehouse today."


def photograph(page: Page, test: str, step: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{test}_{step}.png"), full_page=True)


def words(app, locale: str) -> Callable[..., str]:
    """The app's catalogue in a language: what a page in that language must say."""

    def say(msgid: str, **values) -> str:
        with app.test_request_context(), force_locale(locale):
            return gettext(msgid, **values)

    return say


# An agent's day ----------------------------------------------------------------------------------


@pytest.fixture
def agents_day(live_server) -> dict:
    """An agent with two tickets in hand, one from a customer known by phone; a canned reply."""
    with live_server.app.app_context():
        agent = make_staff(Role.AGENT)
        customer = make_customer(name="Wang Fang", phone=PHONE, language="en")
        theirs, _code = make_ticket(customer_id=customer.id, owner_id=agent.id, subject="Parcel a week late")
        other, _code = make_ticket(owner_id=agent.id, subject="Wrong size delivered")
        with unit_of_work(SYSTEM) as uow:
            for ticket_id in (theirs.id, other.id):
                move_ticket(db.session.get_one(Ticket, ticket_id), "acknowledged")
            uow.add(CannedReply(title="Parcel on its way", language="en", body=CANNED_BODY))
        found = {
            "agent": agent.email,
            "agent_id": agent.id,
            "customer": customer.id,
            "member_no": customer.member_no,
            "ticket": theirs.id,
            "reference": theirs.reference,
        }
        db.session.remove()
    return found


def ticket_state(app, ticket_id: int) -> tuple[str, list[tuple[str, str]]]:
    with app.app_context():
        row = db.session.get_one(Ticket, ticket_id)
        state = (row.status, [(m.kind, m.body) for m in row.messages])
        db.session.remove()
    return state


def work_an_agents_day(page: Page, app, day: dict, say: Callable[..., str], test: str) -> None:
    """Sign-in is done; from the home page to a resolved ticket and back, by clicks only."""
    # 1. Home: the queue, two tickets in hand.
    expect(page.locator("h1")).to_have_text(say("Your queue"))
    expect(page.locator("#queue-open .patron-stat")).to_have_text("2")
    expect(page.locator("#queue-overdue .patron-stat")).to_have_text("0")
    expect(page.locator("#needs-first li")).to_have_count(2)
    expect(page.locator("#needs-first")).to_contain_text("Parcel a week late")
    photograph(page, test, "1_home")

    # 2. The top bar's search, with the phone number as the customer says it: straight to them.
    page.locator("#global-search-term").fill(PHONE_AS_SAID)
    page.locator("#global-search-term").press("Enter")
    page.wait_for_url(re.compile(r"/admin/customers/details/"))
    expect(page.locator("h1#customer-heading")).to_have_text("Wang Fang")
    expect(page.locator("#customer-member-no")).to_have_text(f"{say('Member no.')} {day['member_no']}")
    expect(page.locator("#summary-open-tickets")).to_have_text("1")
    assert PHONE_AS_SAID not in page.url and PHONE not in page.url  # a phone number never in an address
    photograph(page, test, "2_customer")

    # 3. Their open ticket, from their page.
    page.locator("#customer-summary").get_by_role("link", name=day["reference"]).click()
    page.wait_for_url(re.compile(rf"/admin/tickets/ticket/{day['ticket']}$"))
    expect(page.locator("#page-title")).to_have_text(f"{day['reference']} · Parcel a week late")
    expect(page.locator("#ticket-customer")).to_contain_text("Wang Fang")
    photograph(page, test, "3_ticket")

    # 4. A reply from the canned replies, names filled in.
    form = page.locator("#reply-form")
    form.get_by_label(say("Canned reply")).select_option(label="Parcel on its way")
    reply = "Dear Wang Fang, your parcel left our warehouse today."
    expect(form.locator("textarea")).to_have_value(reply)
    form.get_by_role("button", name=say("Add to the thread")).click()
    expect(page.locator(".alert-success")).to_contain_text(say("Added to the thread."))
    expect(page.locator("#thread .bubble.outbound")).to_have_text(re.compile(re.escape(reply)))
    photograph(page, test, "4_replied")

    # 5. Resolve, confirmed in its dialog.
    page.get_by_role("link", name=say("Resolve…")).click()
    dialog = page.get_by_role("dialog", name=say("Resolve %(ticket)s?", ticket=day["reference"]))
    expect(dialog).to_be_visible()
    photograph(page, test, "5_confirm")
    dialog.get_by_role("button", name=say("Resolve"), exact=True).click()
    page.wait_for_url(re.compile(rf"/admin/tickets/ticket/{day['ticket']}$"))
    expect(page.locator("#ticket-status")).to_have_text(say("Resolved"))
    assert ticket_state(app, day["ticket"]) == (
        "resolved",
        [("inbound", "Where is my parcel?"), ("outbound", reply)],
    )
    photograph(page, test, "5_resolved")

    # 6. Home again, by the brand link: one ticket fewer in hand.
    page.locator("a.navbar-brand").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    expect(page.locator("#queue-open .patron-stat")).to_have_text("1")
    expect(page.locator("#needs-first li")).to_have_count(1)
    expect(page.locator("#needs-first")).to_contain_text("Wrong size delivered")
    expect(page.locator("#needs-first")).not_to_contain_text("Parcel a week late")
    photograph(page, test, "6_home_after")
    settle(page)


def test_an_agents_day_search_by_phone_then_reply_and_resolve_from_the_customers_page(
    page: Page, live_server, staff_session, violations, agents_day
):
    staff_session.sign_in(agents_day["agent"])
    expect(page.locator("html")).to_have_attribute("lang", "en")
    work_an_agents_day(page, live_server.app, agents_day, words(live_server.app, "en"), "agents_day")
    assert violations == []


def test_an_agents_day_in_chinese_speaks_the_catalogues_chinese(
    page: Page, live_server, staff_session, violations, agents_day
):
    """The same day with the agent's language set to zh_Hans_CN: every word the catalogue's."""
    with live_server.app.app_context():
        with unit_of_work(SYSTEM):
            set_preferences(db.session.get_one(StaffUser, agents_day["agent_id"]), "zh_Hans_CN", None)
        db.session.remove()
    zh = words(live_server.app, "zh_Hans_CN")
    assert zh("Add to the thread") != "Add to the thread"  # the catalogue is loaded, in Chinese
    staff_session.sign_in(agents_day["agent"])
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    heading = page.locator("h1").inner_text()
    assert heading == zh("Your queue")
    work_an_agents_day(page, live_server.app, agents_day, zh, "agents_day_zh")
    assert violations == []


# A manager's day ---------------------------------------------------------------------------------


@pytest.fixture
def managers_day(live_server) -> dict:
    """A manager; a member with 900 points; a reward; a little of everything the home page charts."""
    with live_server.app.app_context():
        manager = make_staff(Role.MANAGER)
        member = make_customer(name="Li Lei", language="en")
        reward = make_reward(name_en="Canvas tote bag", name_zh="帆布托特包", points_cost=300, stock=5)
        other = make_customer(name="Zhao Lingling")
        cheap = make_reward(name_en="Coffee voucher", name_zh="咖啡兑换券", points_cost=100, stock=None)
        now = utcnow()
        with unit_of_work(SYSTEM):
            points(member.id, "earn", 900, now - timedelta(days=20))
            points(other.id, "earn", 500, now - timedelta(days=40))
            redeem(other.id, cheap.id, now - timedelta(days=10))
        answer(make_survey(), 9, 4, now - timedelta(days=2))
        ticket(
            None,
            "resolved",
            created=now - timedelta(hours=5),
            resolved_at=now - timedelta(hours=1),
            resolution_due=now,
            first_responded_at=now - timedelta(hours=4),
            first_response_due=now,
        )
        ticket(None, "investigating", created=now - timedelta(days=2))
        found = {
            "manager": manager.email,
            "customer": member.id,
            "member_no": member.member_no,
            "reward": reward.id,
        }
        db.session.remove()
    return found


def ledger_balance(app, customer_id: int) -> tuple[int, int, int]:
    """The account's balance, the sum of the ledger, and the last entry's balance after it."""
    with app.app_context():
        account = db.session.get_one(LoyaltyAccount, customer_id)
        total = db.session.scalar(
            sa.select(sa.func.sum(PointsEntry.points)).where(PointsEntry.customer_id == customer_id)
        )
        last = db.session.scalar(
            sa.select(PointsEntry.balance_after)
            .where(PointsEntry.customer_id == customer_id)
            .order_by(PointsEntry.id.desc())
            .limit(1)
        )
        found = (account.balance, int(total or 0), last)
        db.session.remove()
    return found


def test_a_managers_day_figures_then_redeem_and_adjust_from_the_customers_page(
    page: Page, live_server, staff_session, violations, managers_day
):
    say = words(live_server.app, "en")
    test = "managers_day"
    staff_session.sign_in(managers_day["manager"])

    # 1. Home: the team's figures and five drawn charts.
    expect(page.locator("h1")).to_have_text(say("Team overview"))
    expect(page.locator("#stat-backlog")).to_have_text("1")
    expect(page.locator("#stat-sla-resolution")).to_have_text("100.0%")
    expect(page.locator("#stat-customers")).to_have_text("2")
    for chart in ("sla", "backlog", "scores", "points", "rewards"):
        expect(page.locator(f"#chart-{chart} canvas")).to_be_visible()
    expect(page.locator("canvas")).to_have_count(5)
    photograph(page, test, "1_home")

    # 2. The member, by member number in the top bar.
    page.locator("#global-search-term").fill(managers_day["member_no"])
    page.locator("#global-search-term").press("Enter")
    page.wait_for_url(re.compile(rf"/admin/customers/details/\?id={managers_day['customer']}"))
    expect(page.locator("h1#customer-heading")).to_have_text("Li Lei")
    expect(page.locator("#summary-balance")).to_have_text("900")
    photograph(page, test, "2_customer")

    # 3. Redeem a reward (confirmed), and the coupon shown.
    page.locator("#action-redeem").click()
    expect(page.locator("h1")).to_have_text(
        say("Redeem a reward for %(member_no)s", member_no=managers_day["member_no"])
    )
    expect(page.locator("#redeem-balance")).to_contain_text("900")
    page.get_by_label("Canvas tote bag").check()
    photograph(page, test, "3_redeem")
    asked: list[str] = []

    def confirm(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.locator("#redeem-submit").click()
    page.wait_for_url(re.compile(r"/admin/customers/coupon/\d+$"))
    assert asked == [say("Redeem this reward? The points are taken at once.")]
    with live_server.app.app_context():
        coupon = db.session.scalars(
            sa.select(Redemption).where(Redemption.customer_id == managers_day["customer"])
        ).one()
        code, reward_id, spent = coupon.coupon_code, coupon.reward_id, coupon.points
        db.session.remove()
    assert (reward_id, spent) == (managers_day["reward"], 300)
    expect(page.locator("#coupon-code")).to_have_text(code)
    expect(page.locator("#coupon-reward")).to_have_text("Canvas tote bag")
    expect(page.locator("#coupon-points")).to_have_text("300")
    expect(page.locator(".alert-success")).to_contain_text(say("Reward redeemed."))
    photograph(page, test, "3_coupon")

    # 4. Back to the member; adjust points with a reason; the balance shown is the ledger's.
    page.get_by_role("link", name=say("Back to the customer")).click()
    expect(page.locator("#summary-balance")).to_have_text("600")
    form = page.locator("#adjust-points")
    form.get_by_label(say("Points (+ or −)")).fill("-50")
    form.get_by_label(say("Reason")).fill("Correction: goodwill points given twice")
    form.get_by_role("button", name=say("Adjust points")).click()
    expect(page.locator(".alert-success")).to_contain_text(say("Points adjusted."))
    assert ledger_balance(live_server.app, managers_day["customer"]) == (550, 550, 550)
    expect(page.locator("#summary-balance")).to_have_text("550")
    expect(page.locator("#points-balance")).to_have_text("550")
    expect(page.locator("#points-statement tbody tr").first).to_contain_text("-50")
    photograph(page, test, "4_adjusted")
    settle(page)
    assert violations == []
