"""Staff sessions in every request: the hooks that record, limit and end them.

Sign-in (Flask-Login's `login_user`) starts a server-side session record and puts its token
in the signed session cookie; sign-out ends it; before every staff request the record must
exist, be open, and be within the idle and absolute limits (SESSION_IDLE_MINUTES,
SESSION_ABSOLUTE_HOURS), or the browser is signed out: a panel page sends it to the sign-in
page with the reason, a public page goes on for a visitor. The API is not concerned: it
signs requests with keys, not sessions.
"""

from __future__ import annotations

import logging
import typing as t
from datetime import datetime, timedelta

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, logout_user, user_logged_in, user_logged_out

from models import utcnow
from models.staff_session import (
    EXPIRED,
    IDLE,
    REVOKED,
    SIGNED_OUT,
    SessionLimits,
    StaffSession,
    end_reason,
    end_staff_session,
    find_staff_session,
    start_staff_session,
    touch_staff_session,
)
from models.uow import Actor, WriteBusy, in_unit_of_work, unit_of_work

log = logging.getLogger(__name__)

# Where the browser's session token is kept in the (signed) Flask session.
TOKEN_KEY = "sid"
# How often a session's last_seen_at is written at most (config SESSION_TOUCH_SECONDS).
DEFAULT_TOUCH_SECONDS = 60
# Requests the session check leaves alone: the API (keys, not sessions), static files, and
# the sign-out, which ends the account's sessions whatever state this one is in.
_UNCHECKED_ENDPOINTS = frozenset({"static", "staff_auth.logout"})


def register_session_hooks(app: Flask) -> None:
    """Attach the staff-session hooks to this app."""
    user_logged_in.connect(record_sign_in, app)
    user_logged_out.connect(record_sign_out, app)
    app.before_request(check_staff_session)


def session_limits() -> SessionLimits:
    return SessionLimits.from_config(current_app.config)


def current_session_id() -> int | None:
    """The id of this browser's session record, once the request's check has passed."""
    return g.get("staff_session_id")


def record_sign_in(_app: Flask, user: t.Any = None, **_extra: t.Any) -> None:
    """Flask-Login signed a member of staff in: start a session record, its token in the cookie.

    If the record cannot be written (the database stayed busy), the browser is signed out
    again and WriteBusy goes on to the door: a session without a record would not be let in.
    """
    if user is None or getattr(user, "id", None) is None:
        return  # a member of staff never saved (checks of rights in tests) has no session to record
    replaces = session.pop(TOKEN_KEY, None)
    ip, agent = request.remote_addr, request.headers.get("User-Agent")
    try:
        if in_unit_of_work():  # a door that signs in inside its own unit of work
            record, token = start_staff_session(user, ip, agent, replaces=replaces)
        else:
            with unit_of_work(_actor(user)):
                record, token = start_staff_session(user, ip, agent, replaces=replaces)
    except WriteBusy:
        logout_user()
        raise
    session[TOKEN_KEY] = token
    g.staff_session_id = record.id


def record_sign_out(_app: Flask, user: t.Any = None, **_extra: t.Any) -> None:
    """Flask-Login signed this browser out: end its session record."""
    record = find_staff_session(session.pop(TOKEN_KEY, None))
    g.pop("staff_session_id", None)
    if record is None or record.ended_at is not None:
        return
    try:
        if in_unit_of_work():
            end_staff_session(record, SIGNED_OUT)
        else:
            with unit_of_work(_actor(user)):
                end_staff_session(record, SIGNED_OUT)
    except WriteBusy:
        # The cookie no longer holds the token, so nobody presents it again; the record lapses
        # by time (and a sign-out has ended every session of the account anyway).
        log.warning("staff session %s not marked ended: the database was busy", record.id)


def _actor(user: t.Any) -> Actor:
    if getattr(user, "id", None) is None:  # signed out by session protection before this
        return Actor.anonymous(request.remote_addr)
    return Actor.staff(user, request.remote_addr)


def check_staff_session():
    """Before each staff request: let an open session in (noting its use), end any other."""
    if request.path.startswith("/api/") or _unchecked(request.endpoint):
        return None
    if not current_user.is_authenticated:
        return None
    user = current_user._get_current_object()
    now, limits = utcnow(), session_limits()
    record = find_staff_session(session.get(TOKEN_KEY))
    reason = end_reason(record, user, now, limits)
    if reason is None:
        assert record is not None
        g.staff_session_id = record.id
        _note_use(user, record, now)
        return None
    return _sign_out_here(user, record, reason, now, limits)


def _unchecked(endpoint: str | None) -> bool:
    return endpoint is not None and (endpoint in _UNCHECKED_ENDPOINTS or endpoint.endswith(".static"))


def _note_use(user: t.Any, record: StaffSession, now: datetime) -> None:
    """Write last_seen_at at most once per SESSION_TOUCH_SECONDS; skipped if the database is busy."""
    every = timedelta(seconds=float(current_app.config.get("SESSION_TOUCH_SECONDS", DEFAULT_TOUCH_SECONDS)))
    if now - record.last_seen_at < every:
        return
    try:
        with unit_of_work(_actor(user)):
            touch_staff_session(record, now, every)
    except WriteBusy:
        pass  # not essential: the next request notes the use instead


def _sign_out_here(
    user: t.Any, record: StaffSession | None, reason: str, now: datetime, limits: SessionLimits
):
    """Sign this browser out, say why, and send it to the sign-in page (back here afterwards)."""
    message = _ended_message(reason, limits)  # in the member of staff's language, while signed in
    if record is not None and record.ended_at is None and reason in (IDLE, EXPIRED):
        try:
            with unit_of_work(_actor(user)):
                end_staff_session(record, reason, now)
        except WriteBusy:
            pass  # the session has lapsed by time whether or not its row says so
    session.pop(TOKEN_KEY, None)
    logout_user()
    if not _staff_page():
        return None  # a public page (a survey, the feedback form) goes on for a visitor, its form intact
    session.clear()
    flash(message, "warning")
    if request.endpoint == "staff_auth.login":
        return None  # the sign-in page shows itself, with the message
    target = request.full_path.rstrip("?") if request.method in ("GET", "HEAD") else None
    return redirect(url_for("staff_auth.login", next=target))


def _staff_page() -> bool:
    """Whether the request is for the panel or its sign-in pages, rather than a public page."""
    return request.path == "/" or request.path.startswith("/admin") or request.blueprint == "staff_auth"


def idle_limit_text(limits: SessionLimits) -> str:
    """The idle limit in words: "30 minutes"."""
    minutes = max(1, round(limits.idle.total_seconds() / 60))
    return ngettext("%(num)d minute", "%(num)d minutes", minutes)


def lifetime_limit_text(limits: SessionLimits) -> str:
    """The absolute limit in words: "12 hours"."""
    hours = max(1, round(limits.lifetime.total_seconds() / 3600))
    return ngettext("%(num)d hour", "%(num)d hours", hours)


def _ended_message(reason: str, limits: SessionLimits) -> str:
    if reason == IDLE:
        return _(
            "Your session ended after %(idle)s without activity; please sign in again.",
            idle=idle_limit_text(limits),
        )
    if reason == EXPIRED:
        return _(
            "Your session ended %(lifetime)s after you signed in; please sign in again.",
            lifetime=lifetime_limit_text(limits),
        )
    if reason == REVOKED:
        return _("This session was signed out from another of your sessions; please sign in again.")
    return _("Your session has ended; please sign in again.")
