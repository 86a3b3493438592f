"""Loyalty in the panel: purchases entered by staff, adjustments, the customer's statement, imports, keys."""

from __future__ import annotations

import io
from decimal import Decimal

import sqlalchemy as sa

from models import db
from models.api_key import ApiKey, find_api_key
from models.audit import AuditEvent
from models.loyalty import NewPurchase, PointsEntry, Purchase, balance_of, record_purchase
from tests.conftest import csrf_token
from tests.factories import make_customer


def test_an_agent_enters_a_purchase_and_points_follow(client, auth):
    customer = make_customer(phone="13800138000")
    auth.login("agent")
    page = client.get("/admin/purchases/new/")
    data = {
        "csrf_token": csrf_token(page.text),
        "customer_lookup": "13800138000",
        "order_ref": "R-1001",
        "amount": "256.80",
        "channel": "store",
    }
    assert client.post("/admin/purchases/new/", data=data).status_code == 302
    assert balance_of(customer.id) == 256
    purchase = db.session.scalar(sa.select(Purchase))
    assert purchase.source == "admin" and purchase.amount == Decimal("256.80")


def test_the_customer_page_shows_balance_tier_and_statement(client, auth):
    customer = make_customer()
    record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("2500"), "CNY"))
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


def test_a_customer_with_points_history_is_not_deleted(client, auth):
    customer = make_customer()
    record_purchase(NewPurchase(customer.id, "pos", "A-1", Decimal("10"), "CNY"))
    auth.login("manager")
    page = client.get("/admin/customers/")
    client.post("/admin/customers/delete/", data={"id": customer.id, "csrf_token": csrf_token(page.text)})
    assert "must be kept" in client.get("/admin/customers/").text
    assert balance_of(customer.id) == 10


def test_a_manager_schedules_a_promotion_in_local_time(client, auth):
    from datetime import UTC, datetime

    from models.loyalty import Promotion

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


def test_orders_imported_before_are_found_in_chunks(app):
    from models.purchase_import import imported_before

    customer = make_customer()
    for ref in ("O-1", "O-2", "O-3"):
        record_purchase(NewPurchase(customer.id, "pos", ref, Decimal("10"), "CNY"))
    assert imported_before("pos", ["O-1", "O-2", "X", "O-3"], chunk=2) == {"O-1", "O-2", "O-3"}
    assert imported_before("web", ["O-1"]) == set()
