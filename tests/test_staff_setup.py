"""The new-staff form: the role is picked explicitly (no Administrator by default), and it asks
for an initial password instead of offering to keep one that does not exist."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import db
from models.user import Role, StaffUser
from tests.conftest import make_staff
from tests.test_staff_admin import staff_form


def role_options(html: str) -> list[tuple[str, bool]]:
    select = re.search(r'<select[^>]*name="role"[^>]*>(.*?)</select>', html, re.S).group(1)
    return [
        (value, "selected" in attrs)
        for attrs, value in re.findall(r'<option([^>]*value="([^"]*)"[^>]*)>', select)
    ]


def created(email: str) -> StaffUser | None:
    return db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))


def test_the_new_staff_form_picks_no_role_and_lists_the_least_rights_first(client, auth):
    auth.login(Role.ADMIN)
    page = client.get("/admin/staff/new/").text
    assert role_options(page) == [
        ("", False),
        ("analyst", False),
        ("agent", False),
        ("manager", False),
        ("admin", False),
    ]
    assert (
        '<option selected value="">Choose a role…</option>' in page
        or '<option value="">Choose a role…</option>' in page
    )


def test_a_new_account_without_a_role_is_refused_and_nothing_is_created(client, auth):
    auth.login(Role.ADMIN)
    data = staff_form(
        client, "/admin/staff/new/", email="new@example.com", role="", new_password="Marble-otter-51-canal"
    )
    response = client.post("/admin/staff/new/", data=data)
    assert response.status_code == 200 and "Choose the role of this account." in response.text
    assert 'value="new@example.com"' in response.text
    assert created("new@example.com") is None


def test_the_create_form_asks_for_an_initial_password_and_the_edit_form_may_keep_it(client, auth):
    auth.login(Role.ADMIN)
    new = client.get("/admin/staff/new/").text
    assert "Initial password" in new and "Leave empty to keep the current password" not in new
    agent = make_staff(Role.AGENT)
    edit = client.get(f"/admin/staff/edit/?id={agent.id}").text
    assert "New password" in edit and "Leave empty to keep the current password." in edit
    assert ("agent", True) in role_options(edit)


def test_a_new_account_without_a_password_is_refused(client, auth):
    auth.login(Role.ADMIN)
    data = staff_form(client, "/admin/staff/new/", email="new@example.com", role="analyst")
    response = client.post("/admin/staff/new/", data=data)
    assert response.status_code == 200 and "A new account needs a password." in response.text
    assert created("new@example.com") is None
    data = staff_form(
        client,
        "/admin/staff/new/",
        email="new@example.com",
        role="analyst",
        new_password="Marble-otter-51-canal",
    )
    assert client.post("/admin/staff/new/", data=data).status_code == 302
    assert created("new@example.com").role == "analyst"
