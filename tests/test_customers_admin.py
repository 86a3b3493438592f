"""The customer screens: encrypted saves, exact search, masking by role, audit, safe export."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
import sqlalchemy as sa

from models import db
from models.customer import Customer
from models.user import Role
from tests.conftest import csrf_token
from tests.factories import audit_events, failing_after_insert, make_customer, write_lock_held_elsewhere

FORM = {
    "name": "张伟",
    "email": "Zhang.Wei@Example.COM",
    "phone": "138 0013 8000",
    "birthday": "1988-04-12",
    "gender": "male",
    "language": "zh_Hans_CN",
    "city": "杭州",
    "address": "西湖区文三路 90 号",
    "source_channel": "wechat",
    "tags": "vip， wholesale, vip",
    "notes": "喜欢绿茶",
    "member_no": "",
}


def create_customer(client, **changes):
    page = client.get("/admin/customers/new/")
    data = FORM | changes | {"csrf_token": csrf_token(page.text)}
    return client.post("/admin/customers/new/", data=data)


def customer_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Customer.id)))


def test_saving_through_the_admin_form_stores_every_personal_field(client, auth):
    auth.login(Role.AGENT)
    response = create_customer(client)
    assert response.status_code == 302, response.text
    customer = db.session.scalar(sa.select(Customer))
    assert customer.name == "张伟"
    assert customer.email == "Zhang.Wei@example.com"
    assert customer.phone == "+8613800138000"
    assert str(customer.birthday) == "1988-04-12"
    assert customer.address == "西湖区文三路 90 号"
    assert customer.notes == "喜欢绿茶"
    assert customer.tags == "vip,wholesale"
    assert customer.member_no == f"M{customer.id:08d}"
    created = audit_events("customer.create")
    assert len(created) == 1
    assert {"name", "email", "phone", "notes"} <= set(created[0].fields.split(","))
    assert "张伟" not in created[0].detail + created[0].fields


@pytest.mark.parametrize(
    "field, value, message",
    [("email", "not-an-email", "Not a valid email address"), ("phone", "12345", "phone number")],
)
def test_malformed_contact_is_a_form_error_and_saves_nothing(client, auth, field, value, message):
    auth.login(Role.AGENT)
    response = create_customer(client, **{field: value})
    assert response.status_code == 200
    assert message in response.text
    assert customer_count() == 0


def test_a_post_without_csrf_token_changes_nothing(client, auth):
    auth.login(Role.AGENT)
    response = client.post("/admin/customers/new/", data=FORM)
    assert response.status_code in (200, 400)
    assert customer_count() == 0
    customer = make_customer(name="Before")
    client.post(f"/admin/customers/edit/?id={customer.id}", data=FORM | {"name": "After"})
    client.post("/admin/customers/delete/", data={"id": customer.id})
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).name == "Before"
    assert [audit_events(f"customer.{a}") for a in ("create", "edit", "delete")] == [[], [], []]


def search_customers(client, term: str, listing: str = "/admin/customers/"):
    """Type a term into the search box of a customer list page and send it; the answer to the POST."""
    page = client.get(listing)
    assert page.status_code == 200, page.status_code
    form = re.search(r'<form method="POST" action="([^"]+)"[^>]*role="search"', page.text)
    assert form is not None, "no search form on the list"
    action = html.unescape(form.group(1))
    return client.post(action, data={"search": term, "csrf_token": csrf_token(page.text)})


def search_results(client, term: str, listing: str = "/admin/customers/") -> str:
    """The list page a search leads to."""
    response = search_customers(client, term, listing)
    assert response.status_code == 302, response.status_code
    return client.get(response.location).text


@pytest.mark.parametrize(
    "typed", ["zhang.wei@example.com", " ZHANG.WEI@EXAMPLE.COM ", "Zhang.Wei@example.com"]
)
def test_search_finds_a_customer_by_exact_email_in_any_case(client, auth, typed):
    make_customer(name="张伟", email="Zhang.Wei@example.com")
    make_customer(name="李娜", email="li.na@example.com")
    auth.login(Role.AGENT)
    page = search_results(client, typed)
    assert "张伟" in page and "李娜" not in page


@pytest.mark.parametrize("typed", ["13800138000", "+86 138-0013-8000", "+8613800138000"])
def test_search_finds_a_customer_by_phone_in_any_format(client, auth, typed):
    make_customer(name="张伟", phone="13800138000")
    make_customer(name="李娜", phone="13900139000")
    auth.login(Role.AGENT)
    page = search_results(client, typed)
    assert "张伟" in page and "李娜" not in page


def test_search_by_city_still_works(client, auth):
    make_customer(name="张伟", city="杭州")
    make_customer(name="李娜", city="成都")
    auth.login(Role.AGENT)
    page = search_results(client, "杭州")
    assert "张伟" in page and "李娜" not in page


def test_analyst_sees_personal_data_masked_in_list_and_details(client, auth):
    customer = make_customer(name="张伟", email="zhang@example.com", phone="13812345678", notes="喜欢绿茶")
    auth.login(Role.ANALYST)
    for url in ["/admin/customers/", f"/admin/customers/details/?id={customer.id}"]:
        page = client.get(url).text
        assert "z***@example.com" in page and "****5678" in page and "张*" in page
        assert "138****" not in page
        for secret in ["zhang@example.com", "13812345678", "+8613812345678", "张伟", "喜欢绿茶"]:
            assert secret not in page, (url, secret)
    assert audit_events("customer.view") == [] and audit_events("customer.list") == []


def test_analyst_export_is_masked(client, auth):
    make_customer(name="张伟", email="zhang@example.com", phone="13812345678")
    auth.login(Role.ANALYST)
    body = client.get("/admin/customers/export/csv/").text
    (row,) = csv.DictReader(io.StringIO(body.lstrip("\ufeff")))
    assert (row["Name"], row["Email"], row["Phone"]) == ("张*", "z***@example.com", "****5678")
    assert "zhang@example.com" not in body and "张伟" not in body


def test_agent_views_are_audited_with_field_names_only(client, auth):
    customer = make_customer(name="张伟", email="zhang@example.com")
    auth.login(Role.AGENT)
    client.get("/admin/customers/")
    client.get(f"/admin/customers/details/?id={customer.id}")
    listed, viewed = audit_events("customer.list"), audit_events("customer.view")
    assert len(listed) == 1 and str(customer.id) in listed[0].detail
    assert len(viewed) == 1 and viewed[0].object_id == str(customer.id)
    assert "email" in viewed[0].fields and viewed[0].actor == "agent@test.example"
    everything = " ".join(f"{e.fields} {e.detail}" for e in listed + viewed)
    assert "张伟" not in everything and "zhang@example.com" not in everything


def edit_form(client, customer: Customer, **changes) -> dict:
    """The customer's edit form as loaded (with its CSRF token), with `changes` typed in."""
    page = client.get(f"/admin/customers/edit/?id={customer.id}")
    data = {
        "csrf_token": csrf_token(page.text),
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "gender": customer.gender,
        "language": customer.language,
        "city": customer.city,
        "source_channel": customer.source_channel,
        "tags": customer.tags,
        "member_no": customer.member_no,
        "notes": customer.notes or "",
    }
    return data | changes


def test_edit_is_audited_with_the_changed_fields(client, auth):
    customer = make_customer(name="张伟", city="上海")
    auth.login(Role.AGENT)
    data = edit_form(client, customer, city="苏州", notes="新备注")
    response = client.post(f"/admin/customers/edit/?id={customer.id}", data=data)
    assert response.status_code == 302, response.text
    (edit,) = audit_events("customer.edit")
    assert edit.fields == "city,notes"
    assert (edit.object_id, edit.actor) == (str(customer.id), "agent@test.example")
    assert "苏州" not in edit.detail and "新备注" not in edit.detail


def test_a_create_through_the_admin_leaves_one_audit_event_naming_the_fields_typed(client, auth):
    auth.login(Role.AGENT)
    assert create_customer(client).status_code == 302
    (created,) = audit_events("customer.create")
    customer = db.session.scalar(sa.select(Customer))
    assert created.object_id == str(customer.id) and created.actor == "agent@test.example"
    assert created.fields == CREATED_FIELDS


# Every field of the form, and the blind indexes of the email, the name and the phone.
CREATED_FIELDS = (
    "address,birthday,city,email,email_bidx,gender,language,member_no,name,name_bidx,notes,phone,"
    "phone_bidx,source_channel,tags"
)


@pytest.mark.parametrize("change", ["create", "edit"])
def test_a_save_that_fails_after_it_was_written_keeps_neither_it_nor_its_audit_event(client, auth, change):
    customer = make_customer(name="张伟", city="上海")
    auth.login(Role.AGENT)
    city = "杭州" if change == "create" else "苏州"
    # Fails once the change and its audit event are both written, in the save's transaction.
    written = f"NEW.action = 'customer.{change}' AND EXISTS (SELECT 1 FROM customer WHERE city = '{city}')"
    data = edit_form(client, customer, city=city) if change == "edit" else None
    with failing_after_insert("audit_event", written):
        if change == "create":
            response = create_customer(client)
        else:
            response = client.post(f"/admin/customers/edit/?id={customer.id}", data=data)
    assert response.status_code == 200  # the form again, with what was typed
    assert city in response.text
    db.session.expire_all()
    assert db.session.scalars(sa.select(Customer.city)).all() == ["上海"]
    assert audit_events(f"customer.{change}") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_shows_the_edit_form_again_with_what_was_typed(client, auth):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock held by another connection")
    customer = make_customer(name="张伟", city="上海")
    auth.login(Role.AGENT)
    data = edit_form(client, customer, city="苏州", notes="新备注")
    with write_lock_held_elsewhere():
        response = client.post(f"/admin/customers/edit/?id={customer.id}", data=data)
    assert response.status_code == 200
    assert "The database was busy; your change was not saved. Please try again." in response.text
    assert "苏州" in response.text and "新备注" in response.text
    db.session.expire_all()
    assert (db.session.get(Customer, customer.id).city, audit_events("customer.edit")) == ("上海", [])
    assert client.post(f"/admin/customers/edit/?id={customer.id}", data=data).status_code == 302
    assert db.session.get(Customer, customer.id).city == "苏州"


def test_export_streams_every_row_and_neutralises_formulas(client, auth):
    make_customer(name='=HYPERLINK("http://evil.example")', email="a@example.com", city="+SUM(A1)")
    make_customer(name="@cmd", email="b@example.com", city="-1", tags="\tx")
    for i in range(30):
        make_customer(name=f"Plain {i}")
    auth.login(Role.MANAGER)
    response = client.get("/admin/customers/export/csv/")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert len(rows) == 33
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert '\'=HYPERLINK("http://evil.example")' in cells
    (event,) = audit_events("customer.export")
    assert event.detail == "rows=32" and "email" in event.fields
    # The stream read its rows after the view returned; its connection must be back in the pool.
    db.session.close()
    assert db.engine.pool.checkedout() == 0


def test_agents_cannot_export_or_delete(client, auth):
    customer = make_customer()
    auth.login(Role.AGENT)
    assert client.get("/admin/customers/export/csv/").status_code == 403
    assert "export/csv" not in client.get("/admin/customers/").text
    token = csrf_token(client.get("/admin/customers/new/").text)
    response = client.post("/admin/customers/delete/", data={"id": customer.id, "csrf_token": token})
    assert response.status_code == 403
    assert customer_count() == 1


def test_manager_deletion_is_audited(client, auth):
    customer_id = make_customer().id
    auth.login(Role.MANAGER)
    page = client.get("/admin/customers/")
    response = client.post(
        "/admin/customers/delete/", data={"id": customer_id, "csrf_token": csrf_token(page.text)}
    )
    assert response.status_code == 302
    assert customer_count() == 0
    assert audit_events("customer.delete")[0].object_id == str(customer_id)


def test_an_empty_list_says_so(client, auth):
    auth.login(Role.AGENT)
    page = client.get("/admin/customers/").text
    assert "Nothing here yet." in page


def test_export_is_a_stream_not_a_file_built_in_memory(app):
    """The export response is a generator reading the database in batches."""
    from flask_login import login_user

    from tests.conftest import make_staff

    for i in range(12):
        make_customer(name=f"Plain {i}")
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "customers")
    view.export_batch_size = 5
    with app.test_request_context("/admin/customers/export/csv/"):
        login_user(make_staff(Role.MANAGER))
        response = view._export_csv(None)
        assert response.is_streamed
        chunks = iter(response.response)
        assert next(chunks).lstrip("\ufeff").startswith("Member no.")
        assert len(list(chunks)) == 12


def adjust_points_form(client, customer: Customer, points: str, reason: str) -> dict:
    page = client.get(f"/admin/customers/details/?id={customer.id}")
    return {"csrf_token": csrf_token(page.text), "points": points, "reason": reason}


def test_a_points_adjustment_that_fails_after_it_was_written_keeps_neither_it_nor_its_audit_event(
    client, auth
):
    from models.loyalty.ledger import PointsEntry

    customer = make_customer()
    auth.login(Role.MANAGER)
    data = adjust_points_form(client, customer, "50", "Parcel was late")
    written = "NEW.action = 'points.adjust' AND EXISTS (SELECT 1 FROM points_entry)"
    with (
        failing_after_insert("audit_event", written),
        pytest.raises(sa.exc.DBAPIError, match="failed by the test"),
    ):
        client.post(f"/admin/customers/adjust/{customer.id}", data=data)
    assert db.session.scalars(sa.select(PointsEntry)).all() == []
    assert audit_events("points.adjust") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_points_adjustment_on_a_busy_database_is_a_503_that_stores_nothing(client, auth):
    """The customer page cannot be shown again (showing it is audited, which waits too)."""
    from models.loyalty.ledger import PointsEntry

    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock held by another connection")
    customer = make_customer()
    auth.login(Role.MANAGER)
    data = adjust_points_form(client, customer, "50", "Parcel was late")
    with write_lock_held_elsewhere():
        response = client.post(f"/admin/customers/adjust/{customer.id}", data=data)
    assert response.status_code == 503
    assert "The database was busy; your change was not saved. Please try again." in response.text
    assert db.session.scalars(sa.select(PointsEntry)).all() == []
