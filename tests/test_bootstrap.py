"""First run: `flask bootstrap` makes the admin only; demo accounts and data only when asked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import db
from models.api_key import SCOPES, ApiKey
from models.audit import AuditEvent
from models.customer import Customer
from models.user import StaffUser
from tests.conftest import csrf_token
from tests.factories import audit_events

NO_DATA = ["--customers", "0", "--tickets", "0", "--buyers", "0", "--responses", "0"]


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def account_of(user: StaffUser) -> tuple:
    return (user.email, user.display_name, user.role, user.language, user.active, user.password_hash)


def test_bootstrap_alone_creates_only_the_admin_and_prints_its_password(runner, app):
    result = runner.invoke(args=["bootstrap"])
    assert result.exit_code == 0, result.output
    password = result.output.split("Password:")[1].split()[0]
    (admin,) = db.session.scalars(sa.select(StaffUser)).all()
    assert (admin.email, admin.role) == ("admin@patron.local", "admin") and admin.check_password(password)
    assert (count(ApiKey), count(Customer)) == (0, 0)
    assert "Demo" not in result.output and "flask bootstrap --demo" in result.output
    assert [(e.action, e.actor) for e in db.session.scalars(sa.select(AuditEvent))] == [
        ("staff.create", "cli")
    ]


def test_bootstrap_with_demo_adds_demo_staff_and_a_demo_api_key(runner, app):
    result = runner.invoke(args=["bootstrap", "--demo", *NO_DATA])
    assert result.exit_code == 0, result.output
    emails = db.session.scalars(sa.select(StaffUser.email).order_by(StaffUser.email)).all()
    assert emails == [
        "admin@patron.local",
        "agent@patron.local",
        "analyst@patron.local",
        "manager@patron.local",
    ]
    (key,) = db.session.scalars(sa.select(ApiKey)).all()
    assert (key.name, key.scopes) == ("Demo POS", ",".join(sorted(SCOPES)))
    assert "Demo API key:   ptr_" in result.output and "Demo agent" in result.output


def test_bootstrap_refuses_demo_sizes_without_demo(runner, app):
    result = runner.invoke(args=["bootstrap", "--customers", "5"])
    assert result.exit_code == 2 and "--customers only applies with --demo" in result.output
    assert count(StaffUser) == 0


@pytest.mark.parametrize("email", ["agent@patron.local", "admin@patron.local", "analyst@patron.local"])
def test_the_staff_form_saves_a_demo_account_unchanged(runner, client, auth, email):
    assert runner.invoke(args=["bootstrap", "--demo", *NO_DATA]).exit_code == 0
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))
    before = account_of(user)
    auth.login("admin")
    url = f"/admin/staff/edit/?id={user.id}"
    form = {
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "language": user.language or "",
        "active": "y",
        "new_password": "",
        "csrf_token": csrf_token(client.get(url).text),
    }
    response = client.post(url, data=form)
    assert response.status_code == 302, response.text
    db.session.expire_all()
    again = db.session.get(StaffUser, user.id)
    assert (
        again.email,
        again.display_name,
        again.role,
        again.language,
        again.active,
        again.password_hash,
    ) == before


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("agent@@patron.local", "invalid characters: &#39;@&#39;"),
        ("agent@patron.invalid", "special-use or reserved name"),
        ("agent @patron.local", "invalid characters before the @-sign"),
    ],
)
def test_the_staff_form_still_refuses_a_malformed_address(client, auth, email, reason):
    auth.login("admin")
    admin = db.session.scalar(sa.select(StaffUser))
    url = f"/admin/staff/edit/?id={admin.id}"
    form = {
        "email": email,
        "display_name": "A",
        "role": "admin",
        "language": "",
        "active": "y",
        "new_password": "",
        "csrf_token": csrf_token(client.get(url).text),
    }
    response = client.post(url, data=form)
    assert (
        response.status_code == 200
        and "Not a valid email address" in response.text
        and reason in response.text
    )
    db.session.expire_all()
    assert db.session.get(StaffUser, admin.id).email == "admin@test.example"
    assert audit_events("staff.edit") == []
