"""The team's home page in Chromium: Chart.js draws every chart, labelled in the reader's language."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_babel import force_locale, gettext
from playwright.sync_api import Page, expect

from models import db, utcnow
from models.loyalty.rewards import redeem
from models.uow import SYSTEM, unit_of_work
from models.user import Role, set_preferences
from tests.conftest import make_staff
from tests.e2e.conftest import settle
from tests.factories import make_customer, make_reward
from tests.test_home import answer, make_survey, points, ticket

CHARTS = ("chart-sla", "chart-backlog", "chart-scores", "chart-points", "chart-rewards")
# What each chart says, as msgids: (series labels, value-axis title).
WORDS = {
    "chart-backlog": (["Open tickets"], "Tickets"),
    "chart-points": (["Issued", "Redeemed"], "Points"),
    "chart-rewards": (["Redemptions"], "Redemptions"),
    "chart-sla": (["Resolved in time", "First reply in time"], "Share within SLA (%)"),
    "chart-scores": (["NPS", "CSAT (%)"], "Score"),
}
DRAWN = """id => {
  const chart = document.querySelector('#' + id + ' canvas').patronChart;
  const value = chart.options.indexAxis === 'y' ? chart.scales.x : chart.scales.y;
  return {
    labels: chart.data.labels,
    series: chart.data.datasets.map(d => d.label),
    value_title: value.options.title.text,
    area: chart.chartArea.width > 50 && chart.chartArea.height > 50,
    right: chart.canvas.getBoundingClientRect().right,
  };
}"""


@pytest.fixture
def manager(live_server) -> str:
    """A manager, and a little of everything the home page counts: tickets, points, a reward, an answer."""
    with live_server.app.app_context():
        email = make_staff(Role.MANAGER).email
        customer = make_customer(name="Zhao Lingling")
        reward = make_reward(name_en="Tote bag", name_zh="帆布袋", points_cost=100, stock=None)
        now = utcnow()
        with unit_of_work(SYSTEM):
            points(customer.id, "earn", 300, now - timedelta(hours=2))
            redeem(customer.id, reward.id, now - timedelta(hours=1))
        answer(make_survey(), 9, 4, now - timedelta(minutes=30))
        ticket(
            None,
            "resolved",
            created=now - timedelta(hours=5),
            resolved_at=now - timedelta(hours=1),
            resolution_due=now,
            first_responded_at=now - timedelta(hours=4),
            first_response_due=now,
        )
        ticket(None, "investigating", created=now - timedelta(days=2), created_at=now - timedelta(days=2))
        db.session.remove()
    return email


def words(app, locale: str) -> dict:
    """The charts' words as the app's catalogue gives them in a language."""
    with app.test_request_context(), force_locale(locale):
        return {
            chart: ([gettext(s) for s in series], gettext(title)) for chart, (series, title) in WORDS.items()
        }


def read_charts(page: Page) -> dict:
    for chart in CHARTS:
        expect(page.locator(f"#{chart} canvas")).to_be_visible()
    return {chart: page.evaluate(DRAWN, chart) for chart in CHARTS}


def test_the_charts_draw_with_english_labels_under_the_policy(
    page: Page, live_server, staff_session, manager, violations
):
    """Every chart is a drawn canvas with its labels and axis titles in English; nothing refused."""
    staff_session.sign_in(manager)
    drawn = read_charts(page)
    settle(page)
    expected = words(live_server.app, "en")
    for chart, (series, title) in expected.items():
        assert (drawn[chart]["series"], drawn[chart]["value_title"], drawn[chart]["area"]) == (
            series,
            title,
            True,
        )
    assert drawn["chart-backlog"]["labels"] == [
        "Under 1 day",
        "1–3 days",
        "3–7 days",
        "7–30 days",
        "Over 30 days",
    ]
    assert drawn["chart-rewards"]["labels"] == ["Tote bag"]
    assert len(drawn["chart-points"]["labels"]) == 12 and len(drawn["chart-sla"]["labels"]) == 12
    # The numbers are there for screen readers too: the hidden table of the backlog chart.
    rows = page.locator("#chart-backlog table tbody tr")
    expect(rows.nth(1).locator("th")).to_have_text("1–3 days")
    expect(rows.nth(1).locator("td")).to_have_text("1")
    expect(page.locator("#chart-backlog canvas")).to_have_attribute("aria-label", "Open tickets by age")
    assert violations == []


def test_the_charts_speak_chinese_to_a_chinese_speaking_manager(
    page: Page, live_server, staff_session, manager, violations
):
    """With the staff language set to zh_Hans_CN, the labels are the catalogue's Chinese."""
    with live_server.app.app_context():
        with unit_of_work(SYSTEM):
            set_preferences(make_staff(Role.MANAGER), "zh_Hans_CN", None)
        db.session.remove()
    staff_session.sign_in(manager)
    drawn = read_charts(page)
    settle(page)
    expected = words(live_server.app, "zh_Hans_CN")
    for chart, (series, title) in expected.items():
        assert (drawn[chart]["series"], drawn[chart]["value_title"]) == (series, title)
    # Strings the catalogue already translates: the points chart and the backlog's axis.
    assert (drawn["chart-points"]["series"], drawn["chart-points"]["value_title"]) == (
        ["已发放", "兑换"],
        "积分",
    )
    assert drawn["chart-backlog"]["value_title"] == "工单"
    assert drawn["chart-rewards"]["labels"] == ["帆布袋"]
    assert drawn["chart-points"]["labels"][-1].endswith("月") and "年" in drawn["chart-points"]["labels"][-1]
    assert violations == []


def test_the_charts_fit_a_phone(page: Page, live_server, staff_session, manager):
    """At 390 px wide every chart fits the screen and the page does not scroll sideways."""
    staff_session.sign_in(manager)  # the user menu is folded away on a phone: sign in wide
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    drawn = read_charts(page)
    assert all(d["right"] <= 390 and d["area"] for d in drawn.values()), drawn
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
