"""Malformed input to the admin pages and the sign-in: a 4xx or the page again, never a 500.

The public forms' cases are in test_feedback.py and test_survey_pages.py, the API's in
test_api.py; test_fuzz.py looks for more.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from admin.base import StaffModelView
from models import db
from models.loyalty.rewards import Reward
from models.tickets.ticket import category_by_code
from models.user import Role
from tests.conftest import csrf_token, enrol_two_factor, make_staff
from tests.factories import make_customer, make_reward, make_ticket

# Every admin screen that opens one record by `?id=` (for an admin).
RECORD_SCREENS = [
    "/admin/customers/details/",
    "/admin/customers/edit/",
    "/admin/audit/details/",
    "/admin/survey_builder/details/",
    "/admin/survey_builder/edit/",
    "/admin/staff/edit/",
    "/admin/rewards/edit/",
    "/admin/promotions/edit/",
    "/admin/tiers/edit/",
    "/admin/earning_rule/edit/",
    "/admin/ticket_categories/edit/",
    "/admin/sla_policies/edit/",
    "/admin/business_hours/edit/",
    "/admin/holidays/edit/",
]


@pytest.fixture
def admin(client, auth):
    """A client signed in as an admin."""
    auth.login()
    assert client.get("/admin/").status_code == 200
    return client


def model_views(app) -> list[StaffModelView]:
    return [view for view in app.extensions["admin"][0]._views if isinstance(view, StaffModelView)]


def filter_key(app, endpoint: str, column: str, operation: str) -> str:
    """The URL key of a list filter (`flt0_<key>`) on a column with an operation ("equals")."""
    (view,) = [view for view in model_views(app) if view.endpoint == endpoint]
    for key, (_idx, flt) in view._filter_args.items():
        if getattr(flt.column, "key", None) == column and str(flt.operation()) == operation:
            return key
    raise AssertionError(f"no {operation} filter on {column} in {endpoint}")


@pytest.mark.parametrize("query", ["id=1,2", "id=abc", "id=99999999999999999999", "id=1&id=2"])
def test_an_id_that_cannot_be_a_key_is_a_404(admin, query):
    """Is `?id=1,2` (and any id no row can have) on every details and edit page a 404, not a 500?"""
    answers = {screen: admin.get(f"{screen}?{query}").status_code for screen in RECORD_SCREENS}
    assert answers == dict.fromkeys(RECORD_SCREENS, 404)


@pytest.mark.parametrize("screen", ["/admin/customers/details/", "/admin/rewards/edit/"])
def test_a_nul_character_in_an_id_is_a_400(admin, screen):
    """Is an id holding NUL (which PostgreSQL cannot compare) refused with 400?"""
    assert admin.get(f"{screen}?id=1%00").status_code == 400


@pytest.mark.parametrize("url", ["%0A", "/admin/%0D%0ASet-Cookie:x=1", "/admin/%E2%80%A8"])
def test_a_return_address_with_a_line_break_is_a_400(admin, url):
    """Is Flask-Admin's `url=` holding a line break (bound for the Location header) refused with 400?"""
    assert admin.get(f"/admin/customers/details/?url={url}").status_code == 400
    assert admin.get(f"/admin/rewards/edit/?id=1&url={url}").status_code == 400


def test_a_plain_return_address_is_still_followed(admin):
    """Does a well-formed `url=` still lead back where the list was?"""
    response = admin.get("/admin/rewards/edit/?id=424242&url=/admin/rewards/?page=2")
    assert response.status_code == 302 and response.location.endswith("/admin/rewards/?page=2")


def test_a_real_id_still_opens_its_record(admin):
    """Do the key checks leave a well-formed id alone?"""
    customer = make_customer()
    reward = make_reward()
    assert admin.get(f"/admin/customers/details/?id={customer.id}").status_code == 200
    assert admin.get(f"/admin/rewards/edit/?id={reward.id}").status_code == 200
    # A well-formed key that names no row: Flask-Admin's own "Record does not exist."
    missing = admin.get("/admin/rewards/edit/?id=424242")
    assert missing.status_code == 302 and missing.location.endswith("/admin/rewards/")


@pytest.mark.parametrize("page", ["-1", "99999999999999999999", "abc"])
def test_any_page_number_shows_a_list(app, admin, page):
    """Does every admin list answer a negative, huge or non-numeric `page` with a page, not a 500?"""
    make_ticket()
    for view in model_views(app):
        response = admin.get(f"{view.url}/?page={page}")
        assert response.status_code == 200, f"{view.url}: {response.status}"


def test_a_nul_character_in_a_search_is_a_400(admin):
    """Is a search holding NUL refused with 400 on a list searched in SQL?"""
    assert admin.get("/admin/tickets/?search=a%00b").status_code == 400


def test_a_filter_value_that_is_no_number_for_a_number_column_is_dropped_with_a_message(app, admin):
    """Is `flt0_<category equals>=abc` on the ticket list dropped with a message, the list shown?"""
    make_ticket(subject="Parcel late")
    key = filter_key(app, "tickets", "category_id", "equals")
    response = admin.get(f"/admin/tickets/?flt0_{key}=abc")
    assert response.status_code == 200
    assert "Invalid Filter Value: abc" in response.text and "Parcel late" in response.text


def test_a_number_out_of_range_for_its_column_is_dropped_with_a_message(app, admin):
    """Is a customer id beyond any integer column's range dropped from the ledger's filters?"""
    key = filter_key(app, "ledger", "customer_id", "equals")
    response = admin.get(f"/admin/ledger/?flt0_{key}=99999999999999999999")
    assert response.status_code == 200
    assert "Invalid Filter Value: 99999999999999999999" in response.text


def test_an_equality_filter_on_a_number_column_finds_its_rows(app, admin):
    """Does the ticket list's category filter (an id, sent as text) work, on PostgreSQL too?"""
    make_ticket(subject="Parcel late", category=category_by_code("complaint"))
    make_ticket(subject="Open on Sundays?", category=category_by_code("suggestion"))
    key = filter_key(app, "tickets", "category_id", "equals")
    response = admin.get(f"/admin/tickets/?flt0_{key}={category_by_code('complaint').id}")
    assert response.status_code == 200
    assert "Parcel late" in response.text and "Open on Sundays?" not in response.text


def test_date_filters_take_the_staff_members_wall_clock_time(app, admin):
    """Do the date filters of a list (once a server error each) compare Shanghai times as typed?"""
    morning = make_customer(created_at=datetime(2026, 3, 1, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai
    next_day = make_customer(created_at=datetime(2026, 3, 2, 2, 0, tzinfo=UTC))
    after = filter_key(app, "customers", "created_at", "greater than")
    between = filter_key(app, "customers", "created_at", "between")
    later = admin.get(f"/admin/customers/?flt0_{after}=2026-03-01 12:00:00").text
    assert next_day.member_no in later and morning.member_no not in later
    window = admin.get(f"/admin/customers/?flt0_{between}=2026-03-01 09:00:00 to 2026-03-01 11:00:00").text
    assert morning.member_no in window and next_day.member_no not in window


def test_a_date_filter_before_the_first_year_in_utc_is_dropped_with_a_message(app, admin):
    """Is 0001-01-01 00:00 in Shanghai (no time in UTC) dropped from the filters with a message?"""
    key = filter_key(app, "customers", "created_at", "smaller than")
    response = admin.get(f"/admin/customers/?flt0_{key}=0001-01-01 00:00:00")
    assert response.status_code == 200
    assert "Invalid Filter Value: 0001-01-01 00:00:00" in response.text


def test_a_filtered_export_streams_every_row(app, admin):
    """Does a filtered CSV export stream its rows (the signed-in user read again after its audit)?"""
    customer = make_customer(city="上海")
    key = filter_key(app, "customers", "city", "not equal")
    response = admin.get(f"/admin/customers/export/csv/?flt0_{key}=北京")
    assert response.status_code == 200
    assert customer.member_no in response.text


def test_a_text_field_sent_as_a_file_part_to_an_admin_form_is_a_missing_field(admin):
    """Is an edit form's text field sent as a file (multipart) read as missing, nothing saved?"""
    reward = make_reward(name_en="Tote bag")
    token = csrf_token(admin.get(f"/admin/rewards/edit/?id={reward.id}").text)
    data = {
        "csrf_token": token,
        "name_en": (io.BytesIO(b"Mug"), "name.txt"),
        "name_zh": "马克杯",
        "points_cost": "5",
    }
    response = admin.post(f"/admin/rewards/edit/?id={reward.id}", data=data)
    assert response.status_code == 200 and "This field is required." in response.text
    assert db.session.get(Reward, reward.id).name_en == "Tote bag"


@pytest.mark.parametrize("moment", ["0001-01-01 00:00:00", "0001-01-01 07:59:59"])
def test_a_time_before_the_first_year_in_utc_is_a_form_error(admin, moment):
    """Is a reward's end typed as 0001-01-01 in Shanghai (before year 1 in UTC) a form error?"""
    reward = make_reward(name_en="Tote bag")
    page = admin.get(f"/admin/rewards/edit/?id={reward.id}")
    data = {
        "csrf_token": csrf_token(page.text),
        "name_en": "Tote bag",
        "name_zh": "帆布袋",
        "points_cost": "100",
        "ends_at": moment,
    }
    response = admin.post(f"/admin/rewards/edit/?id={reward.id}", data=data)
    assert response.status_code == 200 and "Not a valid datetime value." in response.text
    assert db.session.get(Reward, reward.id).ends_at is None


# The sign-in (its form is the shared CheckedForm of security.py).


def test_a_sign_in_field_sent_as_a_file_part_is_a_missing_field(client):
    """Is an email sent as a file (multipart) read as missing: the form again, not a 500?"""
    page = client.get("/login")
    data = {"csrf_token": csrf_token(page.text), "email": (io.BytesIO(b"a@b.c"), "e.txt"), "password": "x"}
    response = client.post("/login", data=data)
    assert response.status_code == 200
    assert "This field is required." in response.text


@pytest.mark.parametrize("body", ['{"email": 5, "password": []}', "[1, 2]", "[" * 5000])
def test_a_json_body_to_the_sign_in_is_a_400(client, body):
    """Is a JSON body (numbers, lists, deep nesting) to /login refused with 400, not a 500?"""
    assert client.post("/login", data=body, content_type="application/json").status_code == 400


@pytest.mark.parametrize("app_config", [{"TWO_FACTOR_REQUIRED_ROLES": ["admin"]}])
def test_a_code_sent_as_a_file_part_to_the_second_factor_step_is_a_missing_code(client, auth):
    """Is the second step's code sent as a file (multipart) read as missing: the form again?"""
    enrol_two_factor(make_staff(Role.ADMIN))
    assert auth.login(Role.ADMIN).location == "/login/code"
    page = client.get("/login/code")
    data = {"csrf_token": csrf_token(page.text), "code": (io.BytesIO(b"123456"), "code.txt")}
    response = client.post("/login/code", data=data)
    assert response.status_code == 200
    assert "This field is required." in response.text
