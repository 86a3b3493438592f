"""Admins manage staff accounts through the admin screens."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import db
from models.user import StaffUser
from tests.conftest import csrf_token, make_staff
from tests.factories import audit_events, failing_after_insert


def staff_form(client, url: str, **fields) -> dict:
    page = client.get(url)
    base = {
        "email": "",
        "display_name": "",
        "role": "agent",
        "language": "",
        "active": "y",
        "new_password": "",
    }
    return base | fields | {"csrf_token": csrf_token(page.text)}


def test_admin_creates_an_account_with_a_policy_checked_password(client, auth):
    auth.login("admin")
    weak = staff_form(client, "/admin/staff/new/", email="new@example.com", new_password="password1234")
    response = client.post("/admin/staff/new/", data=weak)
    assert response.status_code == 200 and "too common" in response.text
    assert db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "new@example.com")) is None
    good = staff_form(
        client, "/admin/staff/new/", email="New@Example.com", new_password="Marble-otter-51-canal"
    )
    assert client.post("/admin/staff/new/", data=good).status_code == 302
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "new@example.com"))
    assert user.check_password("Marble-otter-51-canal") and user.role == "agent"


def test_changing_a_role_ends_that_persons_sessions(client, app, auth):
    from tests.conftest import AuthActions

    agent_client = app.test_client()
    AuthActions(agent_client).login("agent")
    assert agent_client.get("/admin/").status_code == 200
    auth.login("admin")
    agent = make_staff("agent")
    url = f"/admin/staff/edit/?id={agent.id}"
    data = staff_form(client, url, email=agent.email, display_name="A", role="analyst")
    assert client.post(url, data=data).status_code == 302
    assert agent_client.get("/admin/").status_code == 302


def test_the_last_admin_cannot_demote_or_deactivate_themselves(client, auth):
    auth.login("admin")
    admin = make_staff("admin")
    url = f"/admin/staff/edit/?id={admin.id}"
    data = staff_form(client, url, email=admin.email, display_name="A", role="admin")
    del data["active"]
    client.post(url, data=data)
    db.session.expire_all()
    assert db.session.get(StaffUser, admin.id).active is True
    assert client.get("/admin/").status_code == 200


def test_staff_accounts_cannot_be_deleted(client, auth):
    auth.login("admin")
    agent = make_staff("agent")
    token = csrf_token(client.get("/admin/staff/new/").text)
    client.post("/admin/staff/delete/", data={"id": agent.id, "csrf_token": token})
    assert db.session.get(StaffUser, agent.id) is not None


def test_a_create_and_an_edit_each_leave_one_audit_event_naming_the_changed_fields(client, auth):
    auth.login("admin")
    form = staff_form(
        client,
        "/admin/staff/new/",
        email="New@Example.com",
        display_name="Li",
        new_password="Marble-otter-51-canal",
    )
    assert client.post("/admin/staff/new/", data=form).status_code == 302
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "new@example.com"))
    url = f"/admin/staff/edit/?id={user.id}"
    edit = staff_form(client, url, email=user.email, display_name="Li Na", role="agent")
    assert client.post(url, data=edit).status_code == 302
    (created,) = [e for e in audit_events("staff.create") if e.object_id == str(user.id)]
    assert created.actor == "admin@test.example"
    assert created.fields == "active,display_name,email,language,password_hash,role,session_version"
    (edited,) = audit_events("staff.edit")
    assert (edited.object_id, edited.fields) == (str(user.id), "display_name")


def test_a_role_change_that_fails_after_it_was_written_keeps_the_role_the_sessions_and_no_event(
    client, app, auth
):
    from tests.conftest import AuthActions

    agent_client = app.test_client()
    AuthActions(agent_client).login("agent")
    auth.login("admin")
    agent = make_staff("agent")
    url = f"/admin/staff/edit/?id={agent.id}"
    data = staff_form(client, url, email=agent.email, display_name="A", role="analyst")
    written = "NEW.action = 'staff.edit' AND EXISTS (SELECT 1 FROM staff_user WHERE role = 'analyst')"
    with failing_after_insert("audit_event", written):
        assert client.post(url, data=data).status_code == 200
    db.session.expire_all()
    assert db.session.get(StaffUser, agent.id).role == "agent"
    assert audit_events("staff.edit") == []
    assert agent_client.get("/admin/").status_code == 200


def test_an_edit_without_a_valid_csrf_token_changes_nothing(client, auth):
    auth.login("admin")
    agent = make_staff("agent")
    url = f"/admin/staff/edit/?id={agent.id}"
    data = staff_form(client, url, email=agent.email, display_name="A", role="analyst")
    for token in (None, "not-the-token"):
        forged = {k: v for k, v in data.items() if k != "csrf_token"}
        if token:
            forged["csrf_token"] = token
        assert client.post(url, data=forged).status_code == 200  # the form again, with its error
    db.session.expire_all()
    assert db.session.get(StaffUser, agent.id).role == "agent"
    assert audit_events("staff.edit") == []


def test_the_staff_list_shows_who_has_two_factor_sign_in(client, auth):
    from tests.conftest import enrol_two_factor

    enrol_two_factor(make_staff("manager"))
    make_staff("agent")
    auth.login("admin")
    page = client.get("/admin/staff/?sort=0").text
    cells = dict(
        re.findall(
            r'<td class="col-email">\s*([^<\s]+)\s*</td>.*?<td class="col-two_factor">\s*(\w+)\s*</td>',
            page,
            re.S,
        )
    )
    assert cells == {"admin@test.example": "Off", "agent@test.example": "Off", "manager@test.example": "On"}
