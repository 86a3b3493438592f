"""Sign-in throttles: growing delays per address and account; strangers cannot hold back a trusted browser."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.sign_in_guard import (
    Attempt,
    SignInThrottle,
    ThrottlePolicy,
    address_key,
    record_failure,
    wait_seconds,
)
from models.two_factor import TrustedDevice
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.conftest import (
    TWO_FACTOR_AS_DEPLOYED,
    AuthActions,
    csrf_token,
    enrol_two_factor,
    make_staff,
    next_code,
)
from tests.factories import audit_events

# A first delay far longer than any test, so that a lock never ends by itself while one runs.
LONG_DELAYS = {"SIGN_IN_FIRST_DELAY_SECONDS": 600}


def time_passes() -> None:
    """Every current lock ends, as if its delay had gone by (the counts stay)."""
    with unit_of_work(SYSTEM):
        db.session.execute(
            sa.update(SignInThrottle)
            .where(SignInThrottle.locked_until.is_not(None))
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )


def throttles() -> dict[str, SignInThrottle]:
    """The throttles by kind (one of each in these tests)."""
    db.session.expire_all()
    return {row.scope: row for row in db.session.scalars(sa.select(SignInThrottle))}


def messages(html: str) -> list[str]:
    return [m.strip() for m in re.findall(r'<div class="alert[^"]*" role="alert">([^<]*)</div>', html)]


def trusted_admin(client) -> tuple:
    """An admin with two-factor sign-in whose browser (`client`) is trusted; signed out again."""
    admin = make_staff(Role.ADMIN)
    totp, _codes = enrol_two_factor(admin)
    auth = AuthActions(client)
    assert auth.login(Role.ADMIN).location == "/login/code"
    assert auth.code(totp.now(), trust=True).location == "/admin/"
    auth.logout()
    return admin, totp


# Strangers cannot lock staff out ----------------------------------------------------------------


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED])
def test_a_stranger_failing_50_times_cannot_stop_the_admin_with_a_trusted_browser(app, client):
    admin, totp = trusted_admin(client)
    stranger = AuthActions(app.test_client())
    answers = []
    for attempt in range(50):
        if attempt:
            time_passes()  # so that every one of the 50 guesses is really tried and counted
        answers.append(stranger.login(Role.ADMIN, password=f"guess-{attempt}").status_code)
    assert answers == [200] * 50
    counted = throttles()
    assert (counted["account"].failures, counted["address"].failures) == (50, 50)
    assert counted["account"].locked_until - counted["account"].last_failure_at == timedelta(seconds=900)

    assert stranger.login(Role.ADMIN).status_code == 429  # even the right password, from elsewhere
    assert AuthActions(app.test_client()).login(Role.ADMIN).status_code == 429

    auth = AuthActions(client)
    assert auth.login(Role.ADMIN).location == "/login/code"
    assert auth.code(next_code(totp)).location == "/admin/"
    assert client.get("/admin/").status_code == 200
    # The stranger stays held back: the trusted browser's sign-in clears nobody else's count.
    assert throttles()["account"].failures == 50
    assert stranger.login(Role.ADMIN, password="guess-51").status_code == 429


def test_without_a_trusted_browser_the_delays_grow_to_the_cap(app):
    attempt = Attempt("203.0.113.7", "someone@test.example")
    now = utcnow()
    delays = []
    for _ in range(14):
        now += timedelta(seconds=wait_seconds(attempt, now))
        with unit_of_work(SYSTEM):
            delays.append(record_failure(attempt, now))
    assert delays == [0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    assert wait_seconds(attempt, now) == 900
    assert wait_seconds(attempt, now + timedelta(seconds=899)) == 1
    assert wait_seconds(attempt, now + timedelta(seconds=900)) == 0


def test_the_growing_delays_through_the_sign_in_page_are_audited_as_locks(client, auth):
    make_staff(Role.AGENT)
    for attempt in range(6):
        assert auth.login(Role.AGENT, password=f"wrong-{attempt}").status_code == 200
        time_passes()
    locks = audit_events("sign_in.lock")
    assert [e.detail for e in locks] == [
        "scope=account failures=4 seconds=2",
        "scope=account failures=5 seconds=4",
        "scope=account failures=6 seconds=8",
    ]
    assert {(e.actor, e.object_type, e.ip) for e in locks} == {("anonymous", "sign_in_throttle", "127.0.0.1")}


def test_counts_are_forgotten_after_a_quiet_day(app):
    attempt = Attempt("203.0.113.7", "someone@test.example")
    start = utcnow() - timedelta(days=2)
    for _ in range(3):
        with unit_of_work(SYSTEM):
            record_failure(attempt, start)
    with unit_of_work(SYSTEM):
        assert record_failure(attempt, utcnow()) == 0  # the count started again
    assert throttles()["account"].failures == 1


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_one_address_trying_many_accounts_is_held_back(client, auth):
    answers = [
        auth.login(Role.AGENT, email=f"guess{n}@test.example", password="x" * 12).status_code
        for n in range(11)
    ]
    assert answers == [200] * 11
    other = auth.login(Role.AGENT, email="another@test.example", password="y" * 12)
    assert other.status_code == 429 and other.headers["Retry-After"] in {"600", "599"}
    assert "Too many failed attempts. Please wait 10 minutes and try again." in messages(other.text)


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_an_email_without_an_account_gets_exactly_the_same_answers(app):
    make_staff(Role.AGENT)
    seen = {}
    for email in ("agent@test.example", "ghost@test.example"):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{len(seen) + 1}"
        answers = []
        for attempt in range(5):
            page = client.get("/login")
            data = {"email": email, "password": f"wrong-{attempt}", "csrf_token": csrf_token(page.text)}
            response = client.post("/login", data=data)
            answers.append(
                (response.status_code, messages(response.text), response.headers.get("Retry-After"))
            )
        seen[email] = answers
    assert seen["agent@test.example"] == seen["ghost@test.example"]
    assert [status for status, _m, _r in seen["ghost@test.example"]] == [200, 200, 200, 200, 429]
    assert seen["ghost@test.example"][3][1] == [
        "Wrong email or password.",
        "Too many failed attempts. Please wait 10 minutes before the next try.",
    ]


def test_a_successful_sign_in_starts_the_accounts_count_again(client, auth):
    for attempt in range(2):
        auth.login(Role.AGENT, password=f"wrong-{attempt}")
    assert auth.login(Role.AGENT).status_code == 302
    assert set(throttles()) == {"address"}  # one good account does not wipe guesses at others
    assert audit_events("sign_in.unlock") == []  # nothing was locked, so nothing was unlocked


# Trusted browsers ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED | LONG_DELAYS])
def test_a_trusted_browser_is_held_back_by_its_own_failures_only(app, client):
    admin, totp = trusted_admin(client)
    auth = AuthActions(client)
    answers = [auth.login(Role.ADMIN, password=f"typo-{n}").status_code for n in range(7)]
    assert answers == [200] * 6 + [429]
    counted = throttles()
    assert set(counted) == {"device"} and counted["device"].failures == 6
    assert counted["device"].staff_user_id == admin.id
    assert auth.login(Role.ADMIN).status_code == 429
    # Another browser is not held back by what this one did.
    assert AuthActions(app.test_client()).login(Role.ADMIN).location == "/login/code"


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED | LONG_DELAYS])
def test_a_forged_or_foreign_device_cookie_is_not_trusted(app, client):
    trusted_admin(client)
    value = client.get_cookie("patron_device", path="/login").value
    make_staff(Role.MANAGER)
    for cookie, email in [(value[:-2] + "xx", "admin@test.example"), (value, "manager@test.example")]:
        with unit_of_work(SYSTEM):
            db.session.execute(sa.delete(SignInThrottle))  # a clean slate for each case
        other = app.test_client()
        other.set_cookie("patron_device", cookie, path="/login")
        auth = AuthActions(other)
        answers = [auth.login(Role.ADMIN, email=email, password=f"w-{n}").status_code for n in range(5)]
        assert answers == [200, 200, 200, 200, 429]
        assert set(throttles()) == {"address", "account"}


@pytest.mark.parametrize("app_config", [TWO_FACTOR_AS_DEPLOYED | LONG_DELAYS])
def test_a_forgotten_browser_is_no_longer_trusted(app, client):
    admin, totp = trusted_admin(client)
    auth = AuthActions(client)
    assert auth.login(Role.ADMIN).location == "/login/code"
    assert auth.code(next_code(totp)).location == "/admin/"
    page = client.get("/admin/two_factor/")
    data = {"forget-submit_forget": "1", "forget-csrf_token": csrf_token(page.text, "forget-csrf_token")}
    assert client.post("/admin/two_factor/", data=data).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrustedDevice)) == 0
    assert [e.detail for e in audit_events("trusted_device.forget")] == ["count=1"]
    auth.logout()
    answers = [auth.login(Role.ADMIN, password=f"w-{n}").status_code for n in range(5)]
    assert answers == [200, 200, 200, 200, 429]


# What is stored --------------------------------------------------------------------------------


def test_throttle_keys_hold_no_email_and_no_address(client):
    page = client.get("/login")
    data = {"email": "secret.person@test.example", "password": "wrong", "csrf_token": csrf_token(page.text)}
    assert client.post("/login", data=data).status_code == 200
    rows = db.session.execute(sa.text("SELECT * FROM sign_in_throttle")).mappings().all()
    assert len(rows) == 2
    text = repr([dict(row) for row in rows])
    assert "secret.person" not in text and "127.0.0.1" not in text
    assert {row["scope"]: row["network"] for row in rows} == {"address": "127.0.0.0/24", "account": None}
    assert all(re.fullmatch(r"[0-9a-f]{64}", row["key_hash"]) for row in rows)
    (failed,) = audit_events("login.failed")
    assert (failed.detail, failed.object_id) == ("unknown account", None)


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_itself(app):
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:203.0.113.9") == address_key("203.0.113.9")
    assert address_key("203.0.113.9") != address_key("203.0.113.10")


def test_the_policy_is_read_from_the_settings(app):
    app.config.update(
        SIGN_IN_FREE_FAILURES_PER_ACCOUNT=1, SIGN_IN_FIRST_DELAY_SECONDS=5, SIGN_IN_MAX_DELAY_SECONDS=7
    )
    rules = ThrottlePolicy.from_config(app.config)
    assert [rules.delay("account", n) for n in range(1, 5)] == [0, 5, 7, 7]
    assert [rules.delay("address", n) for n in (10, 11, 12)] == [0, 5, 7]


# Admins see and clear throttles ------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_admins_see_throttles_and_clearing_one_is_audited(app, client, auth):
    stranger = AuthActions(app.test_client())
    stranger.client.environ_base["REMOTE_ADDR"] = "203.0.113.50"
    make_staff(Role.AGENT)
    for n in range(4):
        stranger.login(Role.AGENT, password=f"guess-{n}")
    assert stranger.login(Role.AGENT).status_code == 429

    auth.login(Role.ADMIN)
    page = client.get("/admin/sign_in_throttles/")
    assert page.status_code == 200
    assert "203.0.113.0/24" in page.text and "Test agent" in page.text and "203.0.113.50" not in page.text
    account_id = throttles()["account"].id
    data = {
        "one-throttle_id": str(account_id),
        "one-submit_clear": "1",
        "one-csrf_token": csrf_token(page.text, "one-csrf_token"),
    }
    assert client.post("/admin/sign_in_throttles/", data=data).status_code == 302
    assert set(throttles()) == {"address"}
    (unlock,) = audit_events("sign_in.unlock")
    assert (unlock.actor, unlock.object_id, unlock.detail) == (
        "admin@test.example",
        str(account_id),
        "scope=account failures=4 by=admin",
    )
    # The address still counts 4 failures, under its 10 free ones: the agent may sign in again.
    assert stranger.login(Role.AGENT).status_code == 302


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_clear_all_unlocks_each_throttle_with_its_own_audit_event(app, client, auth):
    for n in range(4):
        auth.login(Role.AGENT, password=f"guess-{n}")
    auth.login(Role.ADMIN)  # the address's 4 failures are under its 10 free ones
    page = client.get("/admin/sign_in_throttles/")
    data = {"all-submit_clear_all": "1", "all-csrf_token": csrf_token(page.text, "all-csrf_token")}
    assert client.post("/admin/sign_in_throttles/", data=data).status_code == 302
    assert throttles() == {}
    assert sorted(e.detail.split()[0] for e in audit_events("sign_in.unlock")) == [
        "scope=account",
        "scope=address",
    ]


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_clearing_needs_an_admin_and_a_csrf_token(app, client, auth):
    for n in range(4):
        auth.login(Role.AGENT, password=f"guess-{n}")
    account_id = throttles()["account"].id
    time_passes()
    auth.login(Role.MANAGER)
    assert client.get("/admin/sign_in_throttles/").status_code == 403
    assert (
        client.post("/admin/sign_in_throttles/", data={"one-throttle_id": str(account_id)}).status_code == 403
    )
    auth.logout()
    auth.login(Role.ADMIN)
    response = client.post(
        "/admin/sign_in_throttles/", data={"one-throttle_id": str(account_id), "one-submit_clear": "1"}
    )
    assert response.status_code == 400
    assert set(throttles()) == {"address", "account"} and audit_events("sign_in.unlock") == []


@pytest.mark.parametrize("app_config", [LONG_DELAYS])
def test_the_unlock_command_clears_an_accounts_throttles_audited(client, auth, runner):
    for n in range(4):
        auth.login(Role.AGENT, password=f"guess-{n}")
    result = runner.invoke(args=["unlock-sign-in", "Agent@Test.example"])
    assert result.exit_code == 0 and "Throttles cleared: 1." in result.output
    (unlock,) = audit_events("sign_in.unlock")
    assert (unlock.actor, unlock.detail) == ("cli", "scope=account failures=4 by=cli")
    assert auth.login(Role.AGENT).status_code == 302


def test_every_lock_and_unlock_is_audited(client, auth):
    """Locks by failures, unlocks by a sign-in: one audit event each, never naming the email."""
    make_staff(Role.AGENT)
    for n in range(5):
        auth.login(Role.AGENT, password=f"guess-{n}")
        time_passes()
    assert auth.login(Role.AGENT).status_code == 302
    locks, unlocks = audit_events("sign_in.lock"), audit_events("sign_in.unlock")
    assert [e.detail for e in locks] == [
        "scope=account failures=4 seconds=2",
        "scope=account failures=5 seconds=4",
    ]
    assert [(e.actor, e.detail) for e in unlocks] == [
        ("agent@test.example", "scope=account failures=5 by=sign-in")
    ]
    assert all("agent@test.example" not in e.detail for e in locks + unlocks)
