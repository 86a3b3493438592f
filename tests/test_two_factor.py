"""Two-factor sign-in: enrolment forced where required, codes accepted once, resets audited."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.two_factor import (
    RecoveryCode,
    StaffTwoFactor,
    TrustedDevice,
    has_two_factor,
    verify_second_factor,
)
from models.uow import SYSTEM, unit_of_work
from models.user import Role, StaffUser
from tests.conftest import (
    TEST_PASSWORD,
    TWO_FACTOR_AS_DEPLOYED,
    AuthActions,
    csrf_token,
    enrol_two_factor,
    make_staff,
    next_code,
)
from tests.factories import audit_events


@pytest.fixture
def app_config() -> dict:
    """Two-factor sign-in required for admins and managers, as deployed."""
    return dict(TWO_FACTOR_AS_DEPLOYED)


NOT_RIGHT = "That code is not right, or it was used already. Please try the next code."


def wrong_code(totp: pyotp.TOTP) -> str:
    """A 6-digit code that none of the accepted time steps shows."""
    now = utcnow()
    taken = {totp.at(now + timedelta(seconds=s)) for s in (-60, -30, 0, 30, 60)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in taken)


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def read_secret(html: str) -> str:
    """The secret as the enrolment page shows it for typing by hand (groups of four)."""
    found = re.search(r'<code class="h6" id="two-factor-secret">([A-Z2-7 ]+)</code>', html)
    assert found, "no secret on the page"
    return found.group(1).replace(" ", "")


# Enrolment ---------------------------------------------------------------------------------


def test_an_admin_without_two_factor_must_enrol_before_being_signed_in(client, auth):
    response = auth.login(Role.ADMIN)
    assert (response.status_code, response.location) == (302, "/login/enrol")
    assert not signed_in(client)
    with client.session_transaction() as sess:
        assert "_user_id" not in sess and sess["sign_in_pending"]["step"] == "enrol"

    page = client.get("/login/enrol")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert '<svg width="' in page.text and 'class="segno"' in page.text
    totp = pyotp.TOTP(read_secret(page.text))
    assert read_secret(client.get("/login/enrol").text) == totp.secret  # the same secret on a reload

    done = client.post("/login/enrol", data={"code": totp.now(), "csrf_token": csrf_token(page.text)})
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert 'href="/admin/"' in done.text
    assert signed_in(client)
    admin = make_staff(Role.ADMIN)
    (enabled,) = audit_events("two_factor.enable")
    assert (enabled.actor, enabled.object_id, enabled.fields) == (
        "admin@test.example",
        str(admin.id),
        "recovery_codes,secret",
    )
    (login,) = audit_events("login")
    assert login.detail == "totp"


def test_a_wrong_enrolment_code_changes_nothing_and_keeps_the_secret(client, auth):
    auth.login(Role.MANAGER)
    page = client.get("/login/enrol")
    secret = read_secret(page.text)
    response = client.post(
        "/login/enrol", data={"code": wrong_code(pyotp.TOTP(secret)), "csrf_token": csrf_token(page.text)}
    )
    assert response.status_code == 200
    assert "That is not the code the app shows now." in response.text
    assert read_secret(response.text) == secret
    assert not signed_in(client)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StaffTwoFactor)) == 0
    assert audit_events("two_factor.enable") == [] and audit_events("login") == []


def test_an_agent_is_not_asked_to_enrol_unless_every_role_must(client, auth, app):
    assert auth.login(Role.AGENT).location == "/admin/"
    auth.logout()
    app.config["TWO_FACTOR_REQUIRED_ROLES"] = ["*"]
    assert auth.login(Role.AGENT).location == "/login/enrol"


def test_the_totp_secret_is_stored_sealed_and_recovery_codes_as_hashes(app):
    user = make_staff(Role.ADMIN)
    totp, codes = enrol_two_factor(user)
    stored = db.session.execute(sa.text("SELECT secret FROM staff_two_factor")).scalar_one()
    assert stored.startswith("v1:") and totp.secret not in stored
    hashes = list(db.session.scalars(sa.select(RecoveryCode.code_hash)))
    assert len(hashes) == 10
    assert not {code.replace("-", "") for code in codes} & set(hashes)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


# Signing in with a code ---------------------------------------------------------------------


def test_an_enrolled_admin_signs_in_with_a_code_and_only_then(client, auth):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    response = auth.login(Role.ADMIN)
    assert (response.status_code, response.location) == (302, "/login/code")
    assert not signed_in(client)
    assert auth.code(totp.now()).location == "/admin/"
    assert signed_in(client)


def test_a_replayed_totp_code_is_refused(client, auth):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    code = totp.now()
    auth.login(Role.ADMIN)
    assert auth.code(code).status_code == 302
    auth.logout()
    auth.login(Role.ADMIN)
    replay = auth.code(code)
    assert replay.status_code == 200 and NOT_RIGHT in replay.text
    assert not signed_in(client)
    assert len(audit_events("login.code_failed")) == 1
    # The code of the next step is fresh, and still accepted.
    assert auth.code(next_code(totp)).location == "/admin/"


def test_a_replay_in_the_same_step_is_refused_by_the_domain_too(app):
    user = make_staff(Role.MANAGER)
    totp, _codes = enrol_two_factor(user)
    now = utcnow()
    with unit_of_work(SYSTEM):
        assert verify_second_factor(user, totp.at(now), now=now) == "totp"
    with unit_of_work(SYSTEM):
        assert verify_second_factor(user, totp.at(now), now=now) is None
        # An older step's code, still inside the drift window, is refused as well.
        earlier = now - timedelta(seconds=30)
        assert verify_second_factor(user, totp.at(earlier), now=now) is None


def test_a_recovery_code_works_once(client, auth):
    user = make_staff(Role.ADMIN)
    _totp, codes = enrol_two_factor(user)
    auth.login(Role.ADMIN)
    used = auth.code(codes[3].upper().replace("-", " "))  # as typed from paper
    assert used.location == "/admin/"
    home = client.get("/admin/")
    assert "You signed in with a recovery code; 9 left." in home.text
    auth.logout()
    auth.login(Role.ADMIN)
    again = auth.code(codes[3])
    assert again.status_code == 200 and NOT_RIGHT in again.text
    assert not signed_in(client)
    (spent,) = audit_events("two_factor.recovery_code_used")
    assert spent.object_id == str(user.id)
    assert [e.detail for e in audit_events("login")] == ["recovery"]


def test_a_wrong_code_is_refused_audited_and_counted(client, auth):
    user = make_staff(Role.ADMIN)
    totp, _codes = enrol_two_factor(user)
    auth.login(Role.ADMIN)
    response = auth.code(wrong_code(totp))
    assert response.status_code == 200 and NOT_RIGHT in response.text
    (failed,) = audit_events("login.code_failed")
    assert (failed.actor, failed.object_id) == ("anonymous", str(user.id))
    from models.sign_in_guard import SignInThrottle

    counted = {row.scope: row.failures for row in db.session.scalars(sa.select(SignInThrottle))}
    assert counted == {"address": 1, "account": 1}


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED | {"SIGN_IN_FIRST_DELAY_SECONDS": 600}])
def test_wrong_codes_hold_the_code_step_back_but_not_a_trusted_browser(app, client, auth):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    trusted = AuthActions(app.test_client())
    trusted.login(Role.ADMIN)
    assert trusted.code(totp.now(), trust=True).location == "/admin/"
    trusted.logout()

    auth.login(Role.ADMIN)
    answers = [auth.code(wrong_code(totp)).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 200, 429]
    refused = auth.code(next_code(totp))  # even the right code waits, from this browser
    assert refused.status_code == 429 and refused.headers["Retry-After"] in {"600", "599"}
    assert not signed_in(client)

    assert trusted.login(Role.ADMIN).location == "/login/code"
    assert trusted.code(next_code(totp)).location == "/admin/"


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(client):
    assert client.get("/login/code").location == "/login"
    assert client.get("/login/enrol").location == "/login"
    page = client.get("/login")
    response = client.post("/login/code", data={"code": "123456", "csrf_token": csrf_token(page.text)})
    assert response.location == "/login"


def test_a_stale_pending_sign_in_must_start_again(client, auth):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    auth.login(Role.ADMIN)
    with client.session_transaction() as sess:
        pending = sess["sign_in_pending"]
        sess["sign_in_pending"] = pending | {"started": pending["started"] - 11 * 60}
    assert client.get("/login/code").location == "/login"
    assert "That took too long; please sign in again." in client.get("/login").text


def test_a_reset_during_the_code_step_voids_the_pending_sign_in(client, auth, runner):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    auth.login(Role.ADMIN)
    assert runner.invoke(args=["reset-2fa", "admin@test.example"]).exit_code == 0
    assert client.get("/login/code").location == "/login"


def test_the_next_page_survives_the_second_step_and_a_line_break_in_it_goes_home(client, app):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    auth = AuthActions(client)
    for target, expected in [("/admin/customers/", "/admin/customers/"), ("/admin/\r\nX-Evil: 1", "/admin/")]:
        page = client.get("/login")
        data = {"email": "admin@test.example", "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)}
        assert client.post("/login", query_string={"next": target}, data=data).location == "/login/code"
        code = totp.now() if expected != "/admin/" else next_code(totp)
        assert auth.code(code).location == expected
        auth.logout()
    # Signed in already, a line break in next= on the sign-in page is a redirect home, not a 500.
    auth.login(Role.AGENT)
    response = client.get("/login", query_string={"next": "/admin/\nSet-Cookie: x=1"})
    assert (response.status_code, response.location) == (302, "/admin/")


# Trusted browsers -----------------------------------------------------------------------------


def test_a_trusted_browser_gets_a_signed_httponly_lax_cookie_stored_hashed(client, auth):
    user = make_staff(Role.ADMIN)
    totp, _codes = enrol_two_factor(user)
    auth.login(Role.ADMIN)
    response = auth.code(totp.now(), trust=True)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("patron_device="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/login" in cookie
    assert "Secure" not in cookie
    (device,) = db.session.scalars(sa.select(TrustedDevice))
    value = client.get_cookie("patron_device", path="/login").value
    token = value.split(".")[0]
    assert (
        device.staff_user_id == user.id and device.token_hash not in value and token not in device.token_hash
    )
    (added,) = audit_events("trusted_device.add")
    assert added.object_id == str(user.id)
    # The code is still asked for from a trusted browser.
    auth.logout()
    assert auth.login(Role.ADMIN).location == "/login/code"


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED | {"SESSION_COOKIE_SECURE": True}])
def test_the_trusted_browser_cookie_is_secure_where_sessions_are(client, auth):
    totp, _codes = enrol_two_factor(make_staff(Role.ADMIN))
    auth.login(Role.ADMIN)
    response = auth.code(totp.now(), trust=True)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("patron_device="))
    assert "; Secure" in cookie and "HttpOnly" in cookie


# Resets -----------------------------------------------------------------------------------------


def test_reset_2fa_command_removes_it_ends_sessions_and_is_audited(client, auth, runner):
    user = make_staff(Role.ADMIN)
    totp, _codes = enrol_two_factor(user)
    auth.login(Role.ADMIN)
    auth.code(totp.now(), trust=True)
    assert signed_in(client)
    result = runner.invoke(args=["reset-2fa", "Admin@Test.example"])
    assert result.exit_code == 0, result.output
    assert "Two-factor sign-in reset for admin@test.example" in result.output
    db.session.expire_all()
    assert not has_two_factor(db.session.get(StaffUser, user.id))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrustedDevice)) == 0
    assert not signed_in(client)
    (reset,) = audit_events("two_factor.reset")
    assert (reset.actor, reset.actor_id, reset.object_id) == ("cli", None, str(user.id))
    # At the next sign-in the admin enrols again.
    assert auth.login(Role.ADMIN).location == "/login/enrol"


def test_reset_2fa_command_refuses_an_unknown_email(runner, app):
    result = runner.invoke(args=["reset-2fa", "nobody@test.example"])
    assert result.exit_code == 1 and "No staff account for nobody@test.example." in result.output
    assert audit_events("two_factor.reset") == []


def test_an_admin_resets_a_managers_two_factor_from_the_staff_screen(client, auth):
    admin = make_staff(Role.ADMIN)
    admin_totp, _codes = enrol_two_factor(admin)
    manager = make_staff(Role.MANAGER)
    enrol_two_factor(manager)
    auth.login(Role.ADMIN)
    auth.code(admin_totp.now())
    listing = client.get("/admin/staff/")
    assert listing.status_code == 200 and "Reset two-factor sign-in" in listing.text
    data = {"action": "reset_two_factor", "rowid": [str(manager.id)], "csrf_token": csrf_token(listing.text)}
    response = client.post("/admin/staff/action/", data=data)
    assert response.status_code == 302
    assert "Two-factor sign-in was reset for 1 account." in client.get("/admin/staff/").text
    db.session.expire_all()
    assert not has_two_factor(db.session.get(StaffUser, manager.id))
    assert has_two_factor(db.session.get(StaffUser, admin.id))
    (reset,) = audit_events("two_factor.reset")
    assert (reset.actor, reset.actor_id, reset.object_id) == ("admin@test.example", admin.id, str(manager.id))


def test_a_reset_without_a_csrf_token_changes_nothing(client, auth):
    admin = make_staff(Role.ADMIN)
    admin_totp, _codes = enrol_two_factor(admin)
    manager = make_staff(Role.MANAGER)
    enrol_two_factor(manager)
    auth.login(Role.ADMIN)
    auth.code(admin_totp.now())
    client.post("/admin/staff/action/", data={"action": "reset_two_factor", "rowid": [str(manager.id)]})
    db.session.expire_all()
    assert has_two_factor(db.session.get(StaffUser, manager.id))
    assert audit_events("two_factor.reset") == []


# The self-service page --------------------------------------------------------------------------


def self_form(client, form: str, **fields: str):
    page = client.get("/admin/two_factor/")
    data = {f"{form}-{name}": value for name, value in fields.items()}
    data[f"{form}-csrf_token"] = csrf_token(page.text, f"{form}-csrf_token")
    submit = {
        "enrol": "submit_enrol",
        "codes": "submit_codes",
        "off": "submit_off",
        "forget": "submit_forget",
    }
    data[f"{form}-{submit[form]}"] = "1"
    return client.post("/admin/two_factor/", data=data)


def test_an_agent_enrols_regenerates_codes_and_turns_it_off_from_their_page(client, auth):
    agent = make_staff(Role.AGENT)
    auth.login(Role.AGENT)
    page = client.get("/admin/two_factor/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    totp = pyotp.TOTP(read_secret(page.text))

    wrong = self_form(client, "enrol", code=totp.now(), password="not my password")
    assert "That is neither your password nor a current code." in wrong.text
    assert not has_two_factor(agent)
    enrolled = self_form(client, "enrol", code=totp.now(), password=TEST_PASSWORD)
    assert enrolled.status_code == 200
    assert len(re.findall(r"<li><code>[a-z2-9]{5}-[a-z2-9]{5}</code></li>", enrolled.text)) == 10
    assert 'data-left="10"' in client.get("/admin/two_factor/").text

    fresh = self_form(client, "codes", confirm=TEST_PASSWORD)
    assert "New recovery codes were made; the old ones no longer work." in fresh.text
    assert len(audit_events("two_factor.recovery_codes")) == 1

    off = self_form(client, "off", confirm=next_code(totp))
    assert off.status_code == 302
    db.session.expire_all()
    assert not has_two_factor(db.session.get(StaffUser, agent.id))
    assert [e.object_id for e in audit_events("two_factor.disable")] == [str(agent.id)]


def test_a_manager_cannot_turn_off_what_their_role_requires(client, auth):
    manager = make_staff(Role.MANAGER)
    totp, _codes = enrol_two_factor(manager)
    auth.login(Role.MANAGER)
    auth.code(totp.now())
    page = client.get("/admin/two_factor/")
    assert "Your role requires it." in page.text and "off-submit_off" not in page.text
    token = csrf_token(page.text, "codes-csrf_token")  # the form is not shown; any of the page's tokens
    data = {"off-confirm": TEST_PASSWORD, "off-submit_off": "1", "off-csrf_token": token}
    response = client.post("/admin/two_factor/", data=data)
    assert "That change is not possible for your account." in response.text
    db.session.expire_all()
    assert has_two_factor(db.session.get(StaffUser, manager.id))
    assert audit_events("two_factor.disable") == []
