"""Redeeming a reward in the panel: the domain's checks and reasons, the coupon, no double redemption."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from models import db
from models.loyalty.ledger import adjust_points, balance_of
from models.loyalty.rewards import Redemption, Reward
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.conftest import TEST_PASSWORD, csrf_token, make_staff
from tests.factories import audit_events, make_customer, make_reward
from tests.live_server import first_traceback, patron_server, server_environment


def with_points(points: int, **fields):
    customer = make_customer(**fields)
    if points:
        with unit_of_work(SYSTEM):
            adjust_points(customer.id, points, "test balance")
    return customer


def redeem_form(client, customer_id: int) -> tuple[str, dict]:
    """The redemption page, and its form's hidden fields (CSRF token, one-time token)."""
    page = client.get(f"/admin/customers/redeem/{customer_id}")
    assert page.status_code == 200
    return page.text, {"csrf_token": csrf_token(page.text), "token": csrf_token(page.text, "token")}


def coupons() -> int:
    return db.session.scalar(sa.select(sa.func.count(Redemption.id)))


def offered(page: str) -> list[str]:
    return re.findall(r'<label for="reward-\d+" class="mb-0">([^<]*)</label>', page)


def test_only_rewards_the_customer_can_redeem_now_are_offered(client, auth):
    customer = with_points(500)
    make_reward(name_en="Tote bag", points_cost=100, stock=5)
    make_reward(name_en="Umbrella", points_cost=400, stock=None)
    make_reward(name_en="Sold out mug", points_cost=100, stock=0)
    make_reward(name_en="Too dear", points_cost=600, stock=None)
    make_reward(name_en="Gold evening", points_cost=100, stock=None, min_tier="gold")
    make_reward(name_en="Withdrawn", points_cost=100, stock=None, active=False)
    auth.login(Role.MANAGER)
    page, _fields = redeem_form(client, customer.id)
    assert offered(page) == ["Tote bag", "Umbrella"]
    assert '<td class="text-right">Unlimited</td>' in page and "Any tier" in page


def test_a_manager_redeems_and_gets_the_coupon_to_print(client, auth):
    customer = with_points(500)
    reward = make_reward(name_en="Tote bag", points_cost=100, stock=5)
    auth.login(Role.MANAGER)
    _page, fields = redeem_form(client, customer.id)
    done = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    (redemption,) = db.session.scalars(sa.select(Redemption)).all()
    assert done.status_code == 302 and done.location.endswith(f"/admin/customers/coupon/{redemption.id}")
    coupon = client.get(done.location).text
    assert f'<div class="coupon-code" id="coupon-code">{redemption.coupon_code}</div>' in coupon
    assert '<dd id="coupon-reward">Tote bag</dd>' in coupon and '<dd id="coupon-points">100</dd>' in coupon
    assert '<dd id="coupon-valid-until">No end date</dd>' in coupon
    assert "Reward redeemed." in coupon
    assert "data-patron-print" in coupon and "/static/patron-print.js" in coupon and "onclick" not in coupon
    assert balance_of(customer.id) == 400 and db.session.get(Reward, reward.id).stock == 4
    assert [e.object_id for e in audit_events("redemption.create")] == [str(redemption.id)]


def test_too_few_points_is_refused_with_the_reason_and_changes_nothing(client, auth):
    """The form offered the reward; by the time it is sent, the points were spent elsewhere."""
    customer = with_points(150)
    reward = make_reward(points_cost=100, stock=5)
    auth.login(Role.AGENT)
    page, fields = redeem_form(client, customer.id)
    assert offered(page) == ["Tote bag"]
    with unit_of_work(SYSTEM):
        adjust_points(customer.id, -100, "spent at the till")
    assert (
        "No reward can be redeemed by this customer now"
        in client.get(f"/admin/customers/redeem/{customer.id}").text
    )
    refused = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    assert refused.status_code == 200 and "Not enough points." in refused.text
    assert balance_of(customer.id) == 50
    assert db.session.get(Reward, reward.id).stock == 5
    assert coupons() == 0 and audit_events("redemption.create") == []


def test_a_reward_for_higher_tiers_is_refused_with_the_reason(client, auth):
    customer = with_points(500)
    reward = make_reward(points_cost=100, stock=None, min_tier="gold")
    make_reward(name_en="Coffee", points_cost=10, stock=None)  # so that the form is drawn
    auth.login(Role.MANAGER)
    _page, fields = redeem_form(client, customer.id)
    refused = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    assert "This reward is for higher tiers only." in refused.text
    assert (balance_of(customer.id), coupons()) == (500, 0)


def test_the_same_form_sent_twice_redeems_once(client, auth):
    customer = with_points(500)
    reward = make_reward(points_cost=100, stock=5)
    auth.login(Role.MANAGER)
    _page, fields = redeem_form(client, customer.id)
    first = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    again = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    assert again.status_code == 302 and again.location == first.location
    assert "This redemption was made already; here is its coupon." in client.get(again.location).text
    assert (coupons(), balance_of(customer.id), db.session.get(Reward, reward.id).stock) == (1, 400, 4)


def test_a_form_token_of_another_customer_redeems_nothing(client, auth):
    customer, other = with_points(500), with_points(500)
    reward = make_reward(points_cost=100, stock=5)
    auth.login(Role.MANAGER)
    _page, fields = redeem_form(client, other.id)
    refused = client.post(f"/admin/customers/redeem/{customer.id}", data=fields | {"reward": reward.id})
    assert refused.status_code == 200 and "This form has expired. Pick the reward again." in refused.text
    assert coupons() == 0


def test_an_analyst_may_not_redeem(client, auth):
    customer = with_points(500)
    auth.login(Role.ANALYST)
    assert client.get(f"/admin/customers/redeem/{customer.id}").status_code == 403
    page = client.get(f"/admin/customers/details/?id={customer.id}").text
    assert 'id="action-redeem"' not in page


# Against a real server ----------------------------------------------------------------------
def sign_in(base: str, email: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=60)
    form = {"email": email, "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)}
    home = session.post(f"{base}/login", data=form, timeout=60)
    assert urlsplit(home.url).path != "/login", home.text[:500]
    return session


@pytest.mark.timeout(240)
def test_two_staff_redeeming_the_last_item_at_once_get_one_coupon(app, database_url, key_material, tmp_path):
    """Two members of staff, two customers, one item left, both press Redeem at once: one coupon."""
    customers = [with_points(500).id, with_points(500).id]
    reward_id = make_reward(points_cost=100, stock=1).id
    staff = [
        make_staff(Role.MANAGER, "boss@test.example").email,
        make_staff(Role.AGENT, "agent@test.example").email,
    ]
    db.session.remove()  # no snapshot of the test's own may outlive the server's writes
    env = server_environment(database_url, tmp_path, key_material)
    with patron_server(env, tmp_path) as base:
        sessions = [sign_in(base, email) for email in staff]
        forms = []
        for session, customer_id in zip(sessions, customers, strict=True):
            page = session.get(f"{base}/admin/customers/redeem/{customer_id}", timeout=60)
            fields = {"csrf_token": csrf_token(page.text), "token": csrf_token(page.text, "token")}
            forms.append(fields | {"reward": str(reward_id)})
        start, answers = threading.Barrier(2), [None, None]

        def press(n: int) -> None:
            start.wait()
            answers[n] = sessions[n].post(
                f"{base}/admin/customers/redeem/{customers[n]}", data=forms[n], timeout=60
            )

        threads = [threading.Thread(target=press, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(a is not None and a.status_code == 200 for a in answers), first_traceback(tmp_path)
    coupon_pages = [a for a in answers if "/admin/customers/coupon/" in a.url]
    refusals = [a for a in answers if "This reward is out of stock." in a.text]
    assert (len(coupon_pages), len(refusals)) == (1, 1)
    db.session.remove()
    assert coupons() == 1 and db.session.get(Reward, reward_id).stock == 0
    assert sorted(balance_of(c) for c in customers) == [400, 500]


@pytest.mark.timeout(240)
def test_the_same_form_sent_twice_at_once_redeems_once(app, database_url, key_material, tmp_path):
    """A double click (or two tabs) sends one form twice at the same moment: one coupon, both see it."""
    customer_id = with_points(500).id
    reward_id = make_reward(points_cost=100, stock=5).id
    email = make_staff(Role.MANAGER, "boss@test.example").email
    db.session.remove()
    env = server_environment(database_url, tmp_path, key_material)
    with patron_server(env, tmp_path) as base:
        session = sign_in(base, email)
        page = session.get(f"{base}/admin/customers/redeem/{customer_id}", timeout=60)
        form = {
            "csrf_token": csrf_token(page.text),
            "token": csrf_token(page.text, "token"),
            "reward": str(reward_id),
        }
        start, answers = threading.Barrier(2), [None, None]

        def press(n: int) -> None:
            start.wait()
            answers[n] = session.post(f"{base}/admin/customers/redeem/{customer_id}", data=form, timeout=60)

        threads = [threading.Thread(target=press, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(a is not None and a.status_code == 200 for a in answers), first_traceback(tmp_path)
    db.session.remove()
    (redemption,) = db.session.scalars(sa.select(Redemption)).all()
    assert [urlsplit(a.url).path for a in answers] == [f"/admin/customers/coupon/{redemption.id}"] * 2
    assert balance_of(customer_id) == 400 and db.session.get(Reward, reward_id).stock == 4
