"""English and Simplified Chinese: browser choice, staff setting, Flask-Admin's own strings."""

from __future__ import annotations

import sqlalchemy as sa

from models import db
from models.uow import SYSTEM, unit_of_work
from models.user import StaffUser


def test_chinese_browser_gets_chinese_login_page(client):
    page = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).text
    assert "登录" in page


def test_chinese_browser_gets_flask_admins_own_strings_in_chinese(client, auth):
    auth.login("agent")
    page = client.get("/admin/customers/", headers={"Accept-Language": "zh-CN"}).text
    assert "客户" in page  # ours
    assert "列表" in page  # Flask-Admin's "List"


def test_english_is_the_default(client, auth):
    auth.login("agent")
    page = client.get("/admin/customers/", headers={"Accept-Language": "fr-FR"}).text
    assert "Customers" in page and "List" in page


def test_staff_language_setting_beats_the_browser(client, auth):
    auth.login("agent")
    response = auth.account_form("lang", language="zh_Hans_CN", timezone="")
    assert response.status_code == 302
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    assert user.language == "zh_Hans_CN"
    page = client.get("/admin/customers/", headers={"Accept-Language": "en-US"}).text
    assert "客户" in page


def test_times_are_shown_in_the_staff_members_zone(client, auth):
    from datetime import UTC, datetime

    from tests.factories import make_customer

    customer = make_customer(created_at=datetime(2026, 1, 15, 20, 30, tzinfo=UTC))
    auth.login("agent")
    details = f"/admin/customers/details/?id={customer.id}"
    assert "2026-01-16 04:30" in client.get(details).text  # the panel default, Asia/Shanghai
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    with unit_of_work(SYSTEM):
        user.timezone = "Europe/London"
    assert "2026-01-15 20:30" in client.get(details).text


def test_a_visitors_language_choice_holds_on_later_pages(client):
    client.get("/feedback?lang=zh_Hans_CN", headers={"Accept-Language": "en"})
    assert "联系我们" in client.get("/feedback", headers={"Accept-Language": "en"}).text
