"""Admins manage staff accounts through the admin screens."""

from __future__ import annotations

import sqlalchemy as sa

from models import db
from models.user import StaffUser
from tests.conftest import csrf_token, make_staff


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
