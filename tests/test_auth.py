"""Staff sign-in, sessions, passwords and the create-user command."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import db
from models.uow import SYSTEM, unit_of_work
from models.user import (
    PASSWORD_HASHER,
    PasswordPolicyError,
    Role,
    StaffUser,
    check_password_policy,
)
from tests.conftest import TEST_PASSWORD, csrf_token, make_staff
from tests.factories import audit_events, failing_after_insert, write_lock_held_elsewhere


def test_passwords_are_hashed_with_argon2id_at_or_above_owasp_parameters(app):
    user = make_staff(Role.AGENT)
    assert user.password_hash.startswith("$argon2id$")
    params = PASSWORD_HASHER
    assert params.memory_cost >= 19 * 1024 and params.time_cost >= 2 and params.parallelism >= 1
    assert TEST_PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    "password",
    ["short1!", "password1234", "1qaz2wsx3edc", "aaaaaaaaaaaaaaaa", "agent@test.example"],
)
def test_weak_passwords_are_refused(app, password):
    with pytest.raises(PasswordPolicyError):
        check_password_policy(password, "agent@test.example")


def test_a_long_uncommon_password_is_accepted(app):
    check_password_policy("Plum-kettle-47-harbour", "someone@example.com")


def test_login_gives_a_new_session_and_reaches_the_panel(client, auth):
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    response = auth.login(Role.AGENT)
    assert response.status_code == 302 and response.location.endswith("/admin/")
    with client.session_transaction() as sess:
        assert "planted" not in sess
    assert client.get("/admin/").status_code == 200
    assert audit_events("login")


def test_wrong_password_is_refused_and_audited_without_the_password(client, auth):
    response = auth.login(Role.AGENT, password="wrong password entirely")
    assert response.status_code == 200
    assert "Wrong email or password" in response.text
    agent = make_staff(Role.AGENT)
    (failed,) = audit_events("login.failed")
    assert (failed.object_type, failed.object_id, failed.detail) == (
        "staff",
        str(agent.id),
        "agent@test.example",
    )
    assert (failed.actor, failed.actor_id, failed.ip) == ("anonymous", None, "127.0.0.1")
    assert client.get("/admin/").status_code == 302


def test_login_without_csrf_token_is_rejected(client, app):
    make_staff(Role.ADMIN)
    response = client.post("/login", data={"email": "admin@test.example", "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("app_config", [{"SIGN_IN_FIRST_DELAY_SECONDS": 600}])
def test_repeated_failures_for_one_account_are_held_back(client, auth):
    """Three wrong passwords are free; the fourth starts a delay (tests/test_sign_in_throttle.py has more)."""
    statuses = [auth.login(Role.AGENT, password=f"wrong-{i}").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    # From a browser never trusted after a two-factor sign-in, the right password waits too.
    response = auth.login(Role.AGENT)
    assert response.status_code == 429
    assert "Too many failed attempts. Please wait 10 minutes and try again." in response.text
    assert 'value="agent@test.example"' in response.text


def test_successful_logins_are_not_counted_against_the_limit(client, auth):
    for _ in range(7):
        assert auth.login(Role.AGENT).status_code == 302
        auth.logout()


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/admin/customers/", "/admin/customers/"),
        ("https://evil.example/", "/admin/"),
        ("//evil.example/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
        ("/admin/\nSet-Cookie: planted=1", "/admin/"),
        ("/admin/customers/\r\n", "/admin/"),
        ("/admin/\x00", "/admin/"),
    ],
)
def test_next_only_follows_local_paths(client, app, target, expected):
    make_staff(Role.AGENT)
    page = client.get("/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": "agent@test.example", "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302
    assert response.location.removeprefix("http://localhost") == expected


def test_logout_kills_a_copied_session_cookie(client, app, auth):
    auth.login(Role.AGENT)
    stolen = client.get_cookie("session").value
    assert auth.logout().status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/admin/").status_code == 302


def test_logout_needs_a_post_with_csrf(client, auth):
    auth.login(Role.AGENT)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200


def test_password_change_signs_out_other_sessions(client, app, auth):
    auth.login(Role.AGENT)
    other = app.test_client()
    type(auth)(other).login(Role.AGENT)
    assert other.get("/admin/").status_code == 200

    response = auth.change_password(TEST_PASSWORD, "Lantern-orchid-93-river")
    assert response.status_code == 302, response.text
    assert client.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    db.session.expire_all()
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    assert user.check_password("Lantern-orchid-93-river")


def test_password_change_needs_the_current_password(client, auth):
    auth.login(Role.AGENT)
    response = auth.change_password("not my password", "Lantern-orchid-93-river")
    assert response.status_code == 200
    assert "not your current password" in response.text


def test_deactivated_staff_are_signed_out_at_once(client, auth):
    auth.login(Role.AGENT)
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    with unit_of_work(SYSTEM):
        user.active = False
    assert client.get("/admin/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(client, auth):
    response = auth.login(Role.AGENT)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure(monkeypatch, database_url, tmp_path, key_material):
    from app import create_app
    from tests.conftest import base_config

    monkeypatch.setenv("PATRON_ENV", "production")
    app = create_app(base_config(tmp_path, database_url, key_material))
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_create_user_reads_password_from_stdin(runner, app):
    result = runner.invoke(
        args=["create-user", "New.Agent@Example.com", "--role", "agent"], input="Saffron-lighthouse-28\n"
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "new.agent@example.com"))
    assert user.role == "agent" and user.check_password("Saffron-lighthouse-28")
    assert "Saffron" not in result.output


def test_create_user_refuses_a_weak_password(runner, app):
    result = runner.invoke(args=["create-user", "x@example.com", "--role", "agent"], input="password\n")
    assert result.exit_code != 0
    assert db.session.scalar(sa.select(sa.func.count(StaffUser.id))) == 0


def test_bootstrap_creates_an_admin_once_and_prints_its_password(runner, app):
    result = runner.invoke(args=["bootstrap", "--demo", "--customers", "5"])
    assert result.exit_code == 0, result.output
    assert "admin@patron.local" in result.output and "Demo API key:   ptr_" in result.output
    password = result.output.split("Password:")[1].split()[0]
    admin = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "admin@patron.local"))
    assert admin.check_password(password)
    again = runner.invoke(args=["bootstrap"])
    assert "set up already" in again.output and password not in again.output


def test_a_sign_in_is_audited_as_the_member_of_staff(client, auth):
    user = make_staff(Role.AGENT)
    auth.login(Role.AGENT)
    (login,) = audit_events("login")
    assert (login.actor, login.actor_id, login.object_id, login.ip) == (
        "agent@test.example",
        user.id,
        str(user.id),
        "127.0.0.1",
    )
    db.session.expire_all()
    assert db.session.get(StaffUser, user.id).last_login_at is not None


def test_a_sign_in_that_fails_after_it_was_written_keeps_neither_it_nor_its_audit_event(client, auth):
    user = make_staff(Role.AGENT)
    written = "NEW.action = 'login' AND EXISTS (SELECT 1 FROM staff_user WHERE last_login_at IS NOT NULL)"
    with (
        failing_after_insert("audit_event", written),
        pytest.raises(sa.exc.DBAPIError, match="failed by the test"),
    ):
        auth.login(Role.AGENT)
    db.session.expire_all()
    assert db.session.get(StaffUser, user.id).last_login_at is None
    assert audit_events("login") == []
    assert client.get("/admin/").status_code == 302  # not signed in


def test_a_sign_out_that_fails_after_it_was_written_leaves_the_sessions_open(client, app, auth):
    auth.login(Role.AGENT)
    other = app.test_client()
    type(auth)(other).login(Role.AGENT)
    written = "NEW.action = 'logout' AND EXISTS (SELECT 1 FROM staff_user WHERE session_version > 1)"
    with (
        failing_after_insert("audit_event", written),
        pytest.raises(sa.exc.DBAPIError, match="failed by the test"),
    ):
        auth.logout()
    assert audit_events("logout") == []
    assert other.get("/admin/").status_code == 200


def test_a_password_change_that_fails_after_it_was_written_keeps_the_old_password(client, auth):
    auth.login(Role.AGENT)
    written = "NEW.action = 'password.change' AND EXISTS (SELECT 1 FROM staff_user WHERE session_version > 1)"
    with (
        failing_after_insert("audit_event", written),
        pytest.raises(sa.exc.DBAPIError, match="failed by the test"),
    ):
        auth.change_password(TEST_PASSWORD, "Lantern-orchid-93-river")
    db.session.expire_all()
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    assert user.check_password(TEST_PASSWORD) and audit_events("password.change") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_leaves_the_visitor_signed_out_with_a_try_again(client):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock held by another connection")
    make_staff(Role.AGENT)
    page = client.get("/login")
    data = {"email": "agent@test.example", "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)}
    with write_lock_held_elsewhere():
        response = client.post("/login", data=data)
    assert response.status_code == 503
    assert "The database was busy; you are not signed in yet. Please try again." in response.text
    assert 'value="agent@test.example"' in response.text
    assert audit_events("login") == []
    assert client.get("/admin/").status_code == 302
    assert client.post("/login", data=data).status_code == 302


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_keeps_the_chosen_preferences_on_the_account_page(client, auth):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock held by another connection")
    auth.login(Role.AGENT)
    with write_lock_held_elsewhere():
        response = auth.account_form("lang", language="zh_Hans_CN", timezone="Europe/London")
    assert response.status_code == 200
    assert "The database was busy; your change was not saved. Please try again." in response.text
    assert '<option selected value="Europe/London">' in response.text
    db.session.expire_all()
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "agent@test.example"))
    assert (user.timezone, audit_events("staff.edit")) == (None, [])


def test_create_user_is_audited_as_the_command_line(runner, app):
    runner.invoke(args=["create-user", "new@example.com", "--role", "agent"], input="Saffron-lighthouse-28\n")
    (created,) = audit_events("staff.create")
    assert (created.actor, created.actor_id) == ("cli", None)


def test_a_control_character_in_the_email_is_refused_clearly_not_a_server_error(client, app):
    make_staff(Role.AGENT)
    page = client.get("/login")
    data = {"email": "agent\x00@test.example", "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)}
    response = client.post("/login", data=data)
    assert response.status_code == 200
    assert "Remove the invisible control characters from this field." in response.text
    assert audit_events("login") == [] and audit_events("login.failed") == []
