"""Loyalty in the panel: purchases entered by staff, adjustments, the customer's statement, imports, keys."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.api_key import ApiKey, find_api_key
from models.audit import AuditEvent
from models.loyalty.imports import imported_before
from models.loyalty.ledger import PointsEntry, balance_of
from models.loyalty.programme import Promotion
from models.loyalty.purchases import NewPurchase, Purchase, record_purchase
from models.loyalty.rewards import Redemption, Reward, redeem
from models.uow import SYSTEM, unit_of_work
from tests.conftest import csrf_token
from tests.factories import (
    audit_events,
    failing_after_insert,
    make_customer,
    make_reward,
    write_lock_held_elsewhere,
)


def purchase(customer, order_ref: str, amount: str) -> None:
    """A purchase recorded through the domain, as the system."""
    with unit_of_work(SYSTEM):
        record_purchase(NewPurchase(customer.id, "pos", order_ref, Decimal(amount), "CNY"))


def purchase_form(client, **fields) -> dict:
    page = client.get("/admin/purchases/new/")
    data = {"customer_lookup": "13800138000", "order_ref": "R-1001", "amount": "256.80", "channel": "store"}
    return {"csrf_token": csrf_token(page.text)} | data | fields


def test_an_agent_enters_a_purchase_and_points_follow(client, auth):
    customer = make_customer(phone="13800138000")
    auth.login("agent")
    assert client.post("/admin/purchases/new/", data=purchase_form(client)).status_code == 302
    assert balance_of(customer.id) == 256
    purchase = db.session.scalar(sa.select(Purchase))
    assert purchase.source == "admin" and purchase.amount == Decimal("256.80")
    [event] = audit_events("purchase.create")
    assert (event.object_id, event.actor, event.ip) == (str(purchase.id), "agent@test.example", "127.0.0.1")
    [entry] = db.session.scalars(sa.select(PointsEntry)).all()
    assert entry.actor == "agent@test.example"


def test_a_failure_after_a_purchase_entered_in_the_panel_keeps_neither_it_nor_its_event(client, auth):
    """If the purchase's audit event is refused, are the purchase and its points gone too?"""
    customer = make_customer(phone="13800138000")
    auth.login("agent")
    data = purchase_form(client)
    written = "NEW.action = 'purchase.create' AND EXISTS (SELECT 1 FROM purchase)"
    with failing_after_insert("audit_event", written):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            client.post("/admin/purchases/new/", data=data)
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0
    assert balance_of(customer.id) == 0 and audit_events("purchase.create") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_shows_the_purchase_form_again_with_what_was_typed(client, auth):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock")
    make_customer(phone="13800138000")
    auth.login("agent")
    data = purchase_form(client, order_ref="R-7731", amount="99.50")
    with write_lock_held_elsewhere():
        response = client.post("/admin/purchases/new/", data=data)
    assert response.status_code == 200
    assert "The database was busy; your change was not saved. Please try again." in response.text
    assert 'value="R-7731"' in response.text and 'value="99.50"' in response.text
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0
    assert client.post("/admin/purchases/new/", data=data).status_code == 302


def test_the_customer_page_shows_balance_tier_and_statement(client, auth):
    customer = make_customer()
    purchase(customer, "A-1", "2500")
    auth.login("analyst")
    page = client.get(f"/admin/customers/details/?id={customer.id}").text
    assert '<dd id="points-balance">2500</dd>' in page and "Silver" in page
    assert 'id="points-statement"' in page and "+2500" in page
    assert "Adjust points" not in page  # analysts cannot adjust


def test_a_manager_adjusts_points_with_a_reason_and_it_is_audited(client, auth):
    customer = make_customer()
    auth.login("manager")
    page = client.get(f"/admin/customers/details/?id={customer.id}")
    token = csrf_token(page.text, "csrf_token")
    url = f"/admin/customers/adjust/{customer.id}"
    client.post(url, data={"csrf_token": token, "points": "-5", "reason": "test"})
    assert balance_of(customer.id) == 0  # cannot go below zero
    client.post(url, data={"csrf_token": token, "points": "50", "reason": ""})
    assert balance_of(customer.id) == 0  # a reason is required
    client.post(url, data={"csrf_token": token, "points": "50", "reason": "Apology for a late parcel"})
    assert balance_of(customer.id) == 50
    entry = db.session.scalar(sa.select(PointsEntry))
    assert entry.kind == "adjust" and entry.actor == "manager@test.example"
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "points.adjust")) is not None


def test_agents_cannot_adjust_points(client, auth):
    customer = make_customer()
    auth.login("agent")
    token = csrf_token(client.get("/admin/customers/new/").text)
    response = client.post(
        f"/admin/customers/adjust/{customer.id}",
        data={"csrf_token": token, "points": "500", "reason": "free points"},
    )
    assert response.status_code == 403 and balance_of(customer.id) == 0


def upload(client, text: str, dry_run: bool):
    page = client.get("/admin/purchase_import/")
    data = {
        "csrf_token": csrf_token(page.text),
        "source": "till-2",
        "file": (io.BytesIO(text.encode()), "p.csv"),
    }
    if dry_run:
        data["dry_run"] = "y"
    return client.post("/admin/purchase_import/", data=data, content_type="multipart/form-data")


def test_csv_import_checks_every_row_and_imports_all_or_nothing(client, auth):
    make_customer(member_no="M-1", email="a@example.com")
    auth.login("manager")
    bad = "order_ref,customer,amount\nO-1,M-1,10.00\nO-2,nobody@example.com,5\nO-3,M-1,abc\nO-1,M-1,3\n"
    page = upload(client, bad, dry_run=False).text
    assert "Nothing was imported" in page
    for line, problem in [(3, "no customer matches"), (4, "is not a number"), (5, "appears twice")]:
        assert f"<td>{line}</td><td>" in page and problem in page
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0
    good = "order_ref,customer,amount,channel\nO-1,M-1,10.00,store\nO-2,a@example.com,20,online\n"
    assert "2 would be imported" in upload(client, good, dry_run=True).text
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0
    assert "2 purchases imported" in upload(client, good, dry_run=False).text
    assert "0 purchases imported; 2 were already there" in upload(client, good, dry_run=False).text
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 2
    [event] = audit_events("purchase.import")
    assert (event.actor, event.detail) == ("manager@test.example", "rows=2")


def test_csv_import_refuses_a_purchase_dated_in_the_future(client, auth):
    """Is a future-dated row an error of the file, as through the API, and nothing imported?"""
    make_customer(member_no="M-1")
    auth.login("manager")
    tomorrow = (utcnow() + timedelta(days=1)).isoformat(timespec="seconds")
    page = upload(
        client, f"order_ref,customer,amount,purchased_at\nO-1,M-1,10.00,{tomorrow}\n", dry_run=False
    )
    assert "Nothing was imported" in page.text
    assert "<td>2</td><td>The purchase time (purchased_at) cannot be in the future.</td>" in page.text
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0


def test_an_issued_api_key_is_shown_once_and_stored_hashed(client, auth):
    auth.login("admin")
    page = client.get("/admin/api_keys/issue")
    response = client.post(
        "/admin/api_keys/issue",
        data={
            "csrf_token": csrf_token(page.text),
            "name": "Webshop",
            "source": "webshop",
            "scopes": ["purchases:write", "points:read"],
        },
    )
    text = response.text.split('id="api-key"')[1].split(">")[1].split("<")[0]
    key = db.session.scalar(sa.select(ApiKey))
    assert find_api_key(text).id == key.id
    assert text.split("_")[-1] not in key.secret_hash
    assert text not in client.get("/admin/api_keys/").text
    [event] = audit_events("api_key.create")
    assert (event.object_id, event.actor, event.fields) == (
        str(key.id),
        "admin@test.example",
        "name,scopes,source",
    )


def test_an_admin_revokes_a_key_and_it_is_audited(client, auth):
    auth.login("admin")
    client.post(
        "/admin/api_keys/issue",
        data={
            "csrf_token": csrf_token(client.get("/admin/api_keys/issue").text),
            "name": "Webshop",
            "source": "webshop",
            "scopes": ["points:read"],
        },
    )
    key = db.session.scalar(sa.select(ApiKey))
    token = csrf_token(client.get("/admin/api_keys/").text)
    client.post("/admin/api_keys/action/", data={"action": "revoke", "rowid": [key.id], "csrf_token": token})
    db.session.refresh(key)
    assert key.revoked_at is not None
    assert [(e.object_id, e.actor) for e in audit_events("api_key.revoke")] == [
        (str(key.id), "admin@test.example")
    ]


def test_a_customer_with_points_history_is_not_deleted(client, auth):
    customer = make_customer()
    purchase(customer, "A-1", "10")
    auth.login("manager")
    page = client.get("/admin/customers/")
    client.post("/admin/customers/delete/", data={"id": customer.id, "csrf_token": csrf_token(page.text)})
    assert "must be kept" in client.get("/admin/customers/").text
    assert balance_of(customer.id) == 10


def test_a_manager_schedules_a_promotion_in_local_time(client, auth):
    auth.login("manager")
    page = client.get("/admin/promotions/new/")
    data = {
        "csrf_token": csrf_token(page.text),
        "name": "Double points weekend",
        "multiplier": "2",
        "starts_at": "2026-12-05 00:00:00",
        "ends_at": "2026-12-07 00:00:00",
        "active": "y",
    }
    assert client.post("/admin/promotions/new/", data=data).status_code == 302
    promotion = db.session.scalar(sa.select(Promotion))
    assert promotion.starts_at == datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # Shanghai midnight
    assert promotion.ends_at == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("endpoint", ["rewards", "promotions"])
def test_a_window_ending_before_it_starts_is_refused_in_the_panel(client, auth, endpoint):
    """Does the reward or promotion form say why, keep what was typed, and store nothing?"""
    auth.login("manager")
    page = client.get(f"/admin/{endpoint}/new/")
    data = {"csrf_token": csrf_token(page.text), "starts_at": "2026-12-07 00:00:00", "active": "y"}
    data |= {"ends_at": "2026-12-05 00:00:00"}
    if endpoint == "rewards":
        data |= {"name_en": "Umbrella", "name_zh": "雨伞", "points_cost": "50", "min_tier": ""}
    else:
        data |= {"name": "Backwards weekend", "multiplier": "2"}
    response = client.post(f"/admin/{endpoint}/new/", data=data)
    assert "The end must come after the start." in response.text
    assert 'value="2026-12-05 00:00:00"' in response.text
    model = Reward if endpoint == "rewards" else Promotion
    assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_coupons_marked_used_and_cancelled_are_audited_with_the_member_of_staff(client, auth):
    customer = make_customer()
    purchase(customer, "A-1", "500")
    bag = make_reward(stock=3)
    with unit_of_work(SYSTEM):
        used, cancelled = (redeem(customer.id, bag.id).redemption.id for _ in range(2))
    auth.login("manager")
    token = csrf_token(client.get("/admin/redemptions/").text)
    for action, coupon in (("use", used), ("cancel", cancelled)):
        client.post(
            "/admin/redemptions/action/", data={"action": action, "rowid": [coupon], "csrf_token": token}
        )
    statuses = dict(db.session.execute(sa.select(Redemption.id, Redemption.status)).all())
    assert statuses == {used: "used", cancelled: "cancelled"}
    assert balance_of(customer.id) == 400
    events = [(e.action, e.object_id, e.actor) for e in db.session.scalars(sa.select(AuditEvent))]
    assert ("redemption.use", str(used), "manager@test.example") in events
    assert ("redemption.cancel", str(cancelled), "manager@test.example") in events


def test_a_manager_refunds_a_purchase_from_the_list(client, auth):
    customer = make_customer()
    purchase(customer, "A-1", "300")
    purchase_id = db.session.scalar(sa.select(Purchase.id))
    auth.login("manager")
    token = csrf_token(client.get("/admin/purchases/").text)
    client.post(
        "/admin/purchases/action/", data={"action": "refund", "rowid": [purchase_id], "csrf_token": token}
    )
    assert db.session.get(Purchase, purchase_id).status == "refunded" and balance_of(customer.id) == 0
    assert [e.actor for e in audit_events("purchase.refund")] == ["manager@test.example"]


def test_orders_imported_before_are_found_in_chunks(app):
    customer = make_customer()
    for ref in ("O-1", "O-2", "O-3"):
        purchase(customer, ref, "10")
    assert imported_before("pos", ["O-1", "O-2", "X", "O-3"], chunk=2) == {"O-1", "O-2", "O-3"}
    assert imported_before("web", ["O-1"]) == set()
