"""Forgotten staff passwords: a request recorded the same way for any email, and single-use,
expiring links (stored as a hash) made by an admin or by `flask reset-password`."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.password_reset import PasswordReset, issue_password_reset
from models.sign_in_guard import SignInThrottle
from models.staff_session import StaffSession
from models.uow import SYSTEM, unit_of_work
from models.user import Role, StaffUser
from tests.conftest import (
    TEST_PASSWORD,
    TWO_FACTOR_AS_DEPLOYED,
    AuthActions,
    csrf_token,
    enrol_two_factor,
    make_staff,
)
from tests.factories import audit_events

NEW_PASSWORD = "Lantern-heron-73-quay"


def ask(client, email: str):
    page = client.get("/login/forgot")
    return client.post("/login/forgot", data={"email": email, "csrf_token": csrf_token(page.text)})


def link_for(user: StaffUser, **kwargs) -> str:
    with unit_of_work(SYSTEM):
        _reset, token = issue_password_reset(db.session.get(StaffUser, user.id), "cli", **kwargs)
    return f"/login/reset/{token}"


def set_password(client, link: str, new: str = NEW_PASSWORD, confirm: str | None = None):
    page = client.get(link)
    data = {"new": new, "confirm": new if confirm is None else confirm, "csrf_token": csrf_token(page.text)}
    return client.post(link, data=data)


def resets() -> list[PasswordReset]:
    return list(db.session.scalars(sa.select(PasswordReset).order_by(PasswordReset.id)))


def answer_text(response) -> str:
    return re.search(
        r'<div class="card card-body" id="forgot-answer">(.*?)</div>', response.text, re.S
    ).group(1)


def test_the_sign_in_page_links_to_the_forgot_password_form(client):
    page = client.get("/login").text
    assert '<a href="/login/forgot" id="forgot-link">Forgot your password?</a>' in page
    assert client.get("/login/forgot").status_code == 200


def test_a_request_answers_the_same_for_a_known_and_an_unknown_email_and_is_audited(client):
    agent = make_staff(Role.AGENT)
    known, unknown = ask(client, agent.email.upper()), ask(client, "nobody@test.example")
    assert (known.status_code, unknown.status_code) == (200, 200)
    assert answer_text(known) == answer_text(unknown)
    assert "Patron does not send email yet, so no link was mailed to you." in known.text
    events = audit_events("password_reset.request")
    assert [(e.object_id, e.detail, e.actor) for e in events] == [
        (str(agent.id), "known account", "anonymous"),
        (None, "unknown account", "anonymous"),
    ]
    assert "nobody@test.example" not in " ".join(e.detail for e in events)
    assert resets() == []  # no link exists until an admin makes one


@pytest.mark.parametrize("app_config", [{"PASSWORD_RESET_RATE_LIMIT": "2 per hour"}])
def test_requests_are_rate_limited_and_the_refused_form_keeps_the_email(client):
    assert [ask(client, "someone@test.example").status_code for _ in range(2)] == [200, 200]
    refused = ask(client, "someone@test.example")
    assert refused.status_code == 429
    assert 'value="someone@test.example"' in refused.text and "Too many requests" in refused.text
    assert len(audit_events("password_reset.request")) == 2


def test_the_command_prints_a_link_whose_token_is_stored_only_as_a_hash(runner, client):
    agent = make_staff(Role.AGENT)
    result = runner.invoke(args=["reset-password", agent.email.upper()])
    assert result.exit_code == 0, result.output
    (link,) = re.findall(r"http://localhost/login/reset/(\S+)", result.output)
    (reset,) = resets()
    assert reset.token_hash == hashlib.sha256(link.encode()).hexdigest()
    assert (reset.source, reset.staff_user_id, reset.expires_at - reset.created_at) == (
        "cli",
        agent.id,
        timedelta(minutes=30),
    )
    assert [e.object_id for e in audit_events("password_reset.create")] == [str(agent.id)]
    assert client.get(f"/login/reset/{link}").status_code == 200
    unknown = runner.invoke(args=["reset-password", "nobody@test.example"])
    assert unknown.exit_code == 1 and "No staff account for nobody@test.example." in unknown.output


def test_a_link_sets_the_password_once_ends_every_session_and_clears_throttles(app, client):
    agent = make_staff(Role.AGENT)
    elsewhere = app.test_client()
    AuthActions(elsewhere).login(Role.AGENT)
    assert elsewhere.get("/admin/").status_code == 200
    stranger = app.test_client()
    for _ in range(4):  # wrong passwords lock the account's throttle
        AuthActions(stranger).login(Role.AGENT, password="wrong password, really")
    assert db.session.scalar(sa.select(sa.func.count(SignInThrottle.id))) >= 1
    link = link_for(agent)
    response = set_password(client, link)
    assert response.status_code == 302 and response.location.endswith("/login")
    db.session.expire_all()
    user = db.session.get(StaffUser, agent.id)
    assert user.check_password(NEW_PASSWORD) and not user.check_password(TEST_PASSWORD)
    assert elsewhere.get("/admin/").status_code == 302  # signed out there
    open_sessions = sa.select(sa.func.count(StaffSession.id)).where(StaffSession.ended_at.is_(None))
    assert db.session.scalar(open_sessions) == 0
    throttles = sa.select(SignInThrottle.scope).where(SignInThrottle.staff_user_id == agent.id)
    assert "account" not in db.session.scalars(throttles).all()
    assert [e.object_id for e in audit_events("password.reset")] == [str(agent.id)]
    # Single use: the same link again leads nowhere.
    again = client.get(link)
    assert again.status_code == 410 and "This link does not work any more" in again.text
    token = csrf_token(client.get("/login/forgot").text)
    reused = {"new": "Another-long-pass-99", "confirm": "Another-long-pass-99", "csrf_token": token}
    assert client.post(link, data=reused).status_code == 410
    assert AuthActions(client).login(Role.AGENT, password=NEW_PASSWORD).status_code == 302


def test_an_expired_or_replaced_link_does_not_work(client):
    agent = make_staff(Role.AGENT)
    with unit_of_work(SYSTEM):
        _old, token = issue_password_reset(agent, "cli", now=utcnow() - timedelta(minutes=31))
    assert client.get(f"/login/reset/{token}").status_code == 410
    first, second = link_for(agent), link_for(agent)
    assert [client.get(link).status_code for link in (first, second)] == [410, 200]
    assert [r.end_reason for r in resets()] == ["replaced", "replaced", None]


def test_a_weak_or_mistyped_password_is_refused_and_the_link_still_works(client):
    agent = make_staff(Role.AGENT)
    link = link_for(agent)
    weak = set_password(client, link, "password1234")
    assert weak.status_code == 200 and "This password is too common" in weak.text
    differ = set_password(client, link, NEW_PASSWORD, confirm=NEW_PASSWORD + "!")
    assert differ.status_code == 200 and "The two passwords differ." in differ.text
    assert set_password(client, link).status_code == 302


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED])
def test_two_factor_is_still_asked_after_a_reset(client):
    manager = make_staff(Role.MANAGER)
    enrol_two_factor(manager)
    assert set_password(client, link_for(manager)).status_code == 302
    response = AuthActions(client).login(Role.MANAGER, password=NEW_PASSWORD)
    assert response.status_code == 302 and response.location.endswith("/login/code")
    assert client.get("/admin/").status_code == 302


def test_an_admin_makes_a_link_from_the_staff_list_shown_once(client, auth):
    agent = make_staff(Role.AGENT)
    auth.login(Role.ADMIN)
    listing = client.get("/admin/staff/")
    data = {"action": "reset_link", "rowid": [str(agent.id)], "csrf_token": csrf_token(listing.text)}
    response = client.post("/admin/staff/action/", data=data)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    (token,) = re.findall(r"readonly>http://localhost/login/reset/([^<]+)</textarea>", response.text)
    (reset,) = resets()
    admin = db.session.scalar(sa.select(StaffUser).where(StaffUser.role == "admin"))
    assert (reset.source, reset.created_by_id, reset.token_hash) == (
        "admin",
        admin.id,
        hashlib.sha256(token.encode()).hexdigest(),
    )
    assert token not in client.get("/admin/staff/").text
    two = client.post("/admin/staff/action/", data=data | {"rowid": [str(agent.id), str(admin.id)]})
    assert two.status_code == 302 and len(resets()) == 1
