"""Staff sessions: recorded per browser, ended when idle or too old, listed, and signed out from elsewhere."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa

from models import db, utcnow
from models.staff_session import (
    EXPIRED,
    IDLE,
    INVALIDATED,
    MISSING,
    SessionLimits,
    StaffSession,
    active_sessions,
    browser_summary,
    close_lapsed_sessions,
    end_other_sessions,
    end_reason,
    start_staff_session,
    touch_staff_session,
)
from models.uow import SYSTEM, Actor, unit_of_work
from models.user import Role, StaffUser
from tests.conftest import TEST_PASSWORD, AuthActions, csrf_token, make_staff
from tests.factories import audit_events, write_lock_held_elsewhere
from tests.live_server import first_traceback, patron_server, server_environment

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
)
LIMITS = SessionLimits(idle=timedelta(minutes=30), lifetime=timedelta(hours=12))
SIGN_IN_AGAIN = "Your session has ended; please sign in again."
ENDED_ELSEWHERE = "This session was signed out from another of your sessions; please sign in again."


def browser(app, user_agent: str = CHROME_LINUX):
    """A test client of its own (its own cookies), sending this User-Agent."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def signed_in(app, role: Role | str = Role.AGENT, email: str | None = None, user_agent: str = CHROME_LINUX):
    """A browser signed in as a member of staff."""
    client = browser(app, user_agent)
    assert AuthActions(client).login(role, email).status_code == 302
    return client


def token_of(client) -> str:
    with client.session_transaction() as sess:
        return sess["sid"]


def record_of(client) -> StaffSession:
    """The session record of a browser, read afresh."""
    db.session.commit()
    digest = hashlib.sha256(token_of(client).encode()).hexdigest()
    record = db.session.scalar(sa.select(StaffSession).where(StaffSession.token_hash == digest))
    assert record is not None
    return record


def stored(record_id: int) -> StaffSession:
    """A session record as the database holds it now."""
    db.session.commit()
    record = db.session.get(StaffSession, record_id)
    assert record is not None
    return record


def sessions_of(email: str) -> list[StaffSession]:
    db.session.commit()
    return list(
        db.session.scalars(
            sa.select(StaffSession)
            .join(StaffUser, StaffUser.id == StaffSession.staff_user_id)
            .where(StaffUser.email == email)
            .order_by(StaffSession.id)
        )
    )


def move_back(record_id: int, **amounts: timedelta) -> None:
    """Move a session's times back (created_at=..., last_seen_at=...), as if that time had passed."""
    row = stored(record_id)
    values = {column: getattr(row, column) - amount for column, amount in amounts.items()}
    with unit_of_work(SYSTEM):
        db.session.execute(sa.update(StaffSession).where(StaffSession.id == record_id).values(**values))


def is_signed_in(client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 200


def login_page_message(client, response) -> str:
    """The message the sign-in page shows after a redirect to it."""
    assert response.status_code == 302 and urlsplit(response.location).path == "/login"
    page = client.get(response.location)
    assert page.status_code == 200
    return page.text


def end_form(client, session_id: int | None = None):
    """Post the account page's "Sign out" for one session (or "Sign out all other sessions")."""
    page = client.get("/admin/account/")
    # One token per browser session: the password form's, when no session form is shown.
    data = {"sessions-csrf_token": csrf_token(page.text, "pw-csrf_token"), "sessions-submit_end": "1"}
    if session_id is None:
        return client.post("/admin/account/sessions/end-others", data=data)
    return client.post(f"/admin/account/sessions/{session_id}/end", data=data)


def ended_audit_rows() -> list[tuple]:
    return [
        (event.actor, event.actor_id, event.object_type, event.object_id, event.fields, event.detail)
        for event in audit_events("staff_session.end")
    ]


# What a browser is --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_LINUX, ("Chrome", "Linux")),
        (FIREFOX_WINDOWS, ("Firefox", "Windows")),
        (SAFARI_IPHONE, ("Safari", "iOS")),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            ("Edge", "Windows"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            ("Chrome", "Android"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.6 Safari/605.1.15",
            ("Safari", "macOS"),
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36",
            ("Chrome", "Linux"),
        ),
        ("python-requests/2.32.3", ("", "")),
        (None, ("", "")),
    ],
)
def test_the_browser_summary_names_browser_and_system(user_agent, expected):
    assert browser_summary(user_agent) == expected


# Sign-in and sign-out -----------------------------------------------------------------------


def test_sign_in_records_the_session_with_only_a_hash_of_its_token(app):
    client = signed_in(app, Role.AGENT)
    token = token_of(client)
    [record] = sessions_of("agent@test.example")
    user = make_staff(Role.AGENT)
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(
        [getattr(record, column.key) for column in sa.inspect(StaffSession).columns]  # type: ignore[union-attr]
    )
    assert (record.staff_user_id, record.session_version, record.ended_at, record.end_reason) == (
        user.id,
        user.session_version,
        None,
        None,
    )
    assert (record.ip, record.browser, record.system) == ("127.0.0.1", "Chrome", "Linux")
    assert record.created_at == record.last_seen_at
    assert len(token) >= 40


def test_sign_out_ends_this_session_and_every_other_one_of_the_account(app):
    first = signed_in(app, Role.AGENT)
    second = signed_in(app, Role.AGENT, user_agent=FIREFOX_WINDOWS)
    first_id, second_id = record_of(first).id, record_of(second).id
    assert AuthActions(first).logout().status_code == 302
    assert not is_signed_in(first) and not is_signed_in(second)
    # The other session is refused by its old session version; signing in again marks it ended.
    again = signed_in(app, Role.AGENT)
    reasons = {record.id: record.end_reason for record in sessions_of("agent@test.example")}
    assert reasons == {first_id: "signed_out", second_id: INVALIDATED, record_of(again).id: None}
    assert ended_audit_rows() == []  # the sign-out has its own audit event
    assert [event.action for event in audit_events("logout")] == ["logout"]


def test_a_password_change_keeps_this_browser_in_a_new_session_and_ends_the_others(app):
    this = signed_in(app, Role.AGENT)
    other = signed_in(app, Role.AGENT, user_agent=FIREFOX_WINDOWS)
    old_this, old_other = record_of(this).id, record_of(other).id
    response = AuthActions(this).change_password(TEST_PASSWORD, "Plum-kettle-47-harbour")
    assert response.status_code == 302
    page = this.get("/admin/account/")
    assert "Your password was changed. Other sessions were signed out." in page.text
    assert not is_signed_in(other)
    new_this = record_of(this)
    reasons = {record.id: record.end_reason for record in sessions_of("agent@test.example")}
    assert reasons == {old_this: "replaced", old_other: INVALIDATED, new_this.id: None}
    assert (
        page.text.count('data-session="') == 1
        and f'data-session="{new_this.id}" data-current="1"' in page.text
    )


# The check on every request -----------------------------------------------------------------


def test_idle_and_absolute_limits_decide_whether_a_session_goes_on(app):
    user = make_staff(Role.AGENT)
    start = utcnow()
    with unit_of_work(Actor.staff(user)):
        record, _token = start_staff_session(user, "10.0.0.1", FIREFOX_WINDOWS, now=start)
    assert end_reason(record, user, start + timedelta(minutes=30), LIMITS) is None
    assert end_reason(record, user, start + timedelta(minutes=30, seconds=1), LIMITS) == IDLE
    # Used every 20 minutes it never idles, but it ends 12 hours after sign-in.
    for step in range(1, 37):
        with unit_of_work(Actor.staff(user)):
            touch_staff_session(record, start + timedelta(minutes=20 * step), timedelta(minutes=1))
    db.session.refresh(record)
    assert record.last_seen_at == start + timedelta(hours=12)
    assert end_reason(record, user, start + timedelta(hours=12), LIMITS) is None
    assert end_reason(record, user, start + timedelta(hours=12, seconds=1), LIMITS) == EXPIRED
    assert end_reason(None, user, start, LIMITS) == MISSING
    other = make_staff(Role.MANAGER)
    assert end_reason(record, other, start, LIMITS) == MISSING
    with unit_of_work(SYSTEM):
        user.end_sessions()  # a role or password change
    assert end_reason(record, user, start, LIMITS) == INVALIDATED
    assert active_sessions(user, start, LIMITS) == []


def test_a_use_is_noted_at_most_once_a_minute(app):
    user = make_staff(Role.AGENT)
    start = utcnow()
    with unit_of_work(Actor.staff(user)):
        record, _token = start_staff_session(user, None, None, now=start)
    every = timedelta(minutes=1)
    noted = []
    for seconds in (30, 59, 60, 61, 119, 120):
        with unit_of_work(Actor.staff(user)):
            noted.append(touch_staff_session(record, start + timedelta(seconds=seconds), every))
    assert noted == [False, False, True, False, False, True]
    db.session.refresh(record)
    assert record.last_seen_at == start + timedelta(seconds=120)


@pytest.mark.parametrize("app_config", [{"SESSION_IDLE_MINUTES": 5}])
def test_an_idle_session_is_ended_and_the_sign_in_page_says_why(app):
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(
        record.id, created_at=timedelta(minutes=5, seconds=2), last_seen_at=timedelta(minutes=5, seconds=1)
    )
    response = client.get("/admin/customers/?sort=1")
    assert response.location == "/login?next=/admin/customers/?sort%3D1"
    page = login_page_message(client, response)
    assert "Your session ended after 5 minutes without activity; please sign in again." in page
    assert not is_signed_in(client)
    db.session.refresh(record)
    assert record.end_reason == IDLE and record.ended_at is not None
    user = make_staff(Role.AGENT)
    assert ended_audit_rows() == [
        ("agent@test.example", user.id, "staff_session", str(record.id), "end_reason,ended_at", "idle")
    ]


@pytest.mark.parametrize("app_config", [{"SESSION_ABSOLUTE_HOURS": 2}])
def test_a_session_older_than_the_absolute_limit_is_ended_however_busy(app):
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(record.id, created_at=timedelta(hours=2, seconds=1))
    response = client.post("/admin/account/", data={})
    assert response.location == "/login"  # a form sent is not sent again after the sign-in
    page = login_page_message(client, response)
    assert "Your session ended 2 hours after you signed in; please sign in again." in page
    db.session.refresh(record)
    assert record.end_reason == EXPIRED
    assert [row[-1] for row in ended_audit_rows()] == ["expired"]


def test_a_session_just_inside_its_limits_goes_on_and_its_use_is_noted(app):
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(
        record.id,
        created_at=timedelta(hours=11, minutes=58),
        last_seen_at=timedelta(minutes=29, seconds=50),
    )
    before = stored(record.id).last_seen_at
    assert is_signed_in(client)
    noted = record_of(client).last_seen_at
    assert noted > before + timedelta(minutes=29)
    assert is_signed_in(client)  # within the minute: not written again
    assert record_of(client).last_seen_at == noted
    assert ended_audit_rows() == []


def test_a_session_signed_in_before_sessions_were_recorded_is_ended(app):
    """A cookie without a session token (signed in before this change) is signed out with a message."""
    client = signed_in(app, Role.AGENT)
    with client.session_transaction() as sess:
        del sess["sid"]
    response = client.get("/admin/tickets/")
    assert response.location == "/login?next=/admin/tickets/"
    assert SIGN_IN_AGAIN in login_page_message(client, response)
    assert not is_signed_in(client)


def test_an_ended_session_visiting_the_sign_in_page_sees_the_form_and_the_reason(app):
    client = signed_in(app, Role.AGENT)
    move_back(record_of(client).id, last_seen_at=timedelta(minutes=31))
    page = client.get("/login")
    assert page.status_code == 200
    assert "Your session ended after 30 minutes without activity; please sign in again." in page.text
    assert 'name="password"' in page.text


def test_a_public_page_goes_on_for_a_visitor_when_the_staff_session_has_lapsed(app):
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(record.id, last_seen_at=timedelta(minutes=31))
    page = client.get("/feedback")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    assert stored(record.id).end_reason == IDLE
    assert client.get("/admin/").location == "/login?next=/admin/"


def test_the_api_is_left_to_its_keys(app):
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(record.id, last_seen_at=timedelta(minutes=31))
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.is_json
    assert client.get("/api/v1/ping").status_code == 401
    db.session.refresh(record)
    assert record.ended_at is None  # not checked, not ended: the API has no sessions


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_skips_noting_the_use_and_the_page_still_opens(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock held by another connection")
    client = signed_in(app, Role.AGENT)
    record = record_of(client)
    move_back(record.id, last_seen_at=timedelta(minutes=5))
    before = record_of(client).last_seen_at
    with write_lock_held_elsewhere():
        response = client.get("/admin/account/")
    assert response.status_code == 200 and 'id="staff-sessions"' in response.text
    assert record_of(client).last_seen_at == before


# The list on "My account" and signing out other sessions ------------------------------------


def test_the_account_page_lists_this_members_working_sessions_in_their_time_zone(app):
    user = make_staff(Role.AGENT)
    with unit_of_work(SYSTEM):
        user.timezone = "Europe/London"
    this = signed_in(app, Role.AGENT)
    phone = signed_in(app, Role.AGENT, user_agent=SAFARI_IPHONE)
    signed_in(app, Role.MANAGER)  # somebody else's session is not listed
    lapsed = signed_in(app, Role.AGENT, user_agent=FIREFOX_WINDOWS)
    move_back(record_of(lapsed).id, last_seen_at=timedelta(minutes=31))
    start = (utcnow() - timedelta(hours=3)).replace(second=0, microsecond=0)
    with unit_of_work(SYSTEM):
        db.session.execute(
            sa.update(StaffSession).where(StaffSession.id == record_of(phone).id).values(created_at=start)
        )
    page = this.get("/admin/account/").text
    this_id, phone_id = record_of(this).id, record_of(phone).id
    rows = [part.split(">", 1)[0] for part in page.split('<tr data-session="')[1:]]
    assert rows == [f'{this_id}" data-current="1"', f'{phone_id}"']
    local = start.astimezone(ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M")
    phone_row = page.split(f'<tr data-session="{phone_id}">')[1].split("</tr>")[0]
    assert "<td>Safari on iOS</td><td>127.0.0.1</td>" in phone_row
    assert f"<td>{local}</td>" in phone_row
    assert f'action="/admin/account/sessions/{phone_id}/end"' in phone_row
    assert "This browser" in page and "Sign out all other sessions" in page
    assert "A session ends after 30 minutes without activity, and 12 hours after signing in at most." in page
    # Nothing inline that a Content-Security-Policy without 'unsafe-inline' would block.
    assert page.count("<script") == page.count("<script nonce=")
    assert re.search(r"\son[a-z]+=", page) is None


def test_signing_out_another_session_refuses_its_cookie_at_once(app):
    this = signed_in(app, Role.AGENT)
    other = signed_in(app, Role.AGENT, user_agent=FIREFOX_WINDOWS)
    other_id = record_of(other).id
    response = end_form(this, other_id)
    assert response.status_code == 302 and response.location == "/admin/account/"
    assert "That session was signed out." in this.get("/admin/account/").text
    refused = other.get("/admin/customers/")
    assert ENDED_ELSEWHERE in login_page_message(other, refused)
    assert not is_signed_in(other)
    assert is_signed_in(this)
    user = make_staff(Role.AGENT)
    assert ended_audit_rows() == [
        ("agent@test.example", user.id, "staff_session", str(other_id), "end_reason,ended_at", "revoked")
    ]
    assert stored(other_id).end_reason == "revoked"


def test_signing_out_all_other_sessions_leaves_this_one_and_other_members_alone(app):
    this = signed_in(app, Role.AGENT)
    others = [signed_in(app, Role.AGENT, user_agent=agent) for agent in (FIREFOX_WINDOWS, SAFARI_IPHONE)]
    manager = signed_in(app, Role.MANAGER)
    other_ids = sorted(record_of(client).id for client in others)
    response = end_form(this)
    assert response.status_code == 302
    page = this.get("/admin/account/").text
    assert "2 other sessions were signed out." in page
    assert "This browser is your only session." in page
    assert [is_signed_in(client) for client in others] == [False, False]
    assert is_signed_in(this) and is_signed_in(manager)
    user = make_staff(Role.AGENT)
    assert ended_audit_rows() == [
        ("agent@test.example", user.id, "staff_session", str(other_id), "end_reason,ended_at", "revoked")
        for other_id in other_ids
    ]


def test_another_members_session_cannot_be_signed_out(app):
    manager = signed_in(app, Role.MANAGER)
    agent = signed_in(app, Role.AGENT)
    response = end_form(agent, record_of(manager).id)
    assert response.status_code == 302
    assert "That session had already ended." in agent.get("/admin/account/").text
    assert is_signed_in(manager)
    assert ended_audit_rows() == []


def test_this_session_is_not_signed_out_from_the_list(app):
    this = signed_in(app, Role.AGENT)
    end_form(this, record_of(this).id)
    assert "This is the session you are using; use Sign out in the menu to end it." in (
        this.get("/admin/account/").text
    )
    assert is_signed_in(this) and ended_audit_rows() == []


def test_signing_out_sessions_needs_the_csrf_token(app):
    this = signed_in(app, Role.AGENT)
    other = signed_in(app, Role.AGENT, user_agent=FIREFOX_WINDOWS)
    other_id = record_of(other).id
    data = {"sessions-submit_end": "1"}
    assert this.post(f"/admin/account/sessions/{other_id}/end", data=data).status_code == 400
    assert this.post("/admin/account/sessions/end-others", data=data).status_code == 400
    assert this.get(f"/admin/account/sessions/{other_id}/end").status_code == 405
    assert is_signed_in(other) and ended_audit_rows() == []


def test_an_anonymous_visitor_cannot_sign_sessions_out(app, client):
    victim = signed_in(app, Role.AGENT)
    response = client.post(f"/admin/account/sessions/{record_of(victim).id}/end", data={})
    assert response.status_code == 302 and urlsplit(response.location).path == "/login"
    assert is_signed_in(victim)


# Housekeeping -------------------------------------------------------------------------------


def test_housekeeping_closes_lapsed_sessions_and_removes_old_ended_ones(app):
    user = make_staff(Role.AGENT)
    start = utcnow()
    with unit_of_work(Actor.staff(user)):
        idle, _ = start_staff_session(user, None, None, now=start - timedelta(hours=2))
        old, _ = start_staff_session(user, None, None, now=start - timedelta(hours=13))
        touch_staff_session(old, start - timedelta(minutes=5), timedelta(minutes=1))
        working, _ = start_staff_session(user, None, None, now=start)
        long_gone, _ = start_staff_session(user, None, None, now=start - timedelta(days=100))
    with unit_of_work(SYSTEM):
        db.session.execute(
            sa.update(StaffSession)
            .where(StaffSession.id == long_gone.id)
            .values(ended_at=start - timedelta(days=91), end_reason="signed_out")
        )
    with unit_of_work(SYSTEM):
        counts = close_lapsed_sessions(start, LIMITS, keep=timedelta(days=90))
    assert counts == {"sessions_invalidated": 0, "sessions_closed": 2, "sessions_removed": 1}
    reasons = {record.id: record.end_reason for record in sessions_of("agent@test.example")}
    assert reasons == {idle.id: IDLE, old.id: EXPIRED, working.id: None}
    with unit_of_work(SYSTEM):
        assert end_other_sessions(user, None, start, LIMITS) == [working.id]


# Several staff members at once against a real server ----------------------------------------


PAGES = ["/admin/", "/admin/account/", "/admin/customers/", "/admin/tickets/"]
ROUNDS = 25
STAFF = [
    ("admin", "admin@test.example"),
    ("manager", "boss@test.example"),
    ("agent", "agent1@test.example"),
    ("agent", "agent2@test.example"),
    ("analyst", "analyst@test.example"),
]


def staff_browsing(base: str, email: str, problems: list[str], lock: threading.Lock) -> None:
    """Sign in, then open pages; anything but the page itself is a problem."""
    with requests.Session() as web:
        web.headers["User-Agent"] = CHROME_LINUX
        page = web.get(base + "/login", timeout=60)
        form = {"email": email, "password": TEST_PASSWORD, "csrf_token": csrf_token(page.text)}
        home = web.post(base + "/login", data=form, timeout=60)
        answers = [(home.status_code, urlsplit(home.url).path)]
        for n in range(ROUNDS):
            path = PAGES[n % len(PAGES)]
            answer = web.get(base + path, timeout=60)
            answers.append((answer.status_code, urlsplit(answer.url).path))
        wrong = [answer for answer in answers if answer[0] != 200 or answer[1] == "/login"]
        if wrong:
            with lock:
                problems.append(f"{email}: {wrong}")


def test_noting_each_use_under_several_staff_at_once_fails_no_page(app, database_url, key_material, tmp_path):
    """A real server, five staff members at once, every request writing last_seen_at: every page opens."""
    staff = {email: make_staff(role, email).id for role, email in STAFF}
    db.session.remove()
    env = server_environment(database_url, tmp_path, key_material) | {"PATRON_SESSION_TOUCH_SECONDS": "0"}
    problems: list[str] = []
    lock = threading.Lock()
    with patron_server(env, tmp_path) as base:
        threads = [
            threading.Thread(target=staff_browsing, args=(base, email, problems, lock)) for _r, email in STAFF
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert problems == [], "\n".join([*problems, first_traceback(tmp_path)])
    for email, user_id in staff.items():
        [record] = sessions_of(email)
        assert (record.staff_user_id, record.ended_at) == (user_id, None)
        assert record.last_seen_at > record.created_at
