"""Staff sessions: one row per signed-in browser, ended by sign-out, by its owner, or by time.

The browser holds a random token (in the signed session cookie); the row keeps only its
SHA-256. A session is alive while its row is not ended, it was made under the account's
current session version (a password change, a role change and a sign-out bump the version
and so end every session at once), it was used within the idle limit and it is younger
than the absolute limit. Limits are checked on every request, so an ended session stops
working at once, whether or not its row could be marked ended.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of, utcnow
from models.uow import current_uow
from models.user import StaffUser

# Why a session ended. The first three are audited as "staff_session.end" when they happen;
# the others follow an action that has its own audit event (logout, password.change, staff.edit).
REVOKED = "revoked"  # signed out from another session of the same member of staff
IDLE = "idle"  # no request within the idle limit
EXPIRED = "expired"  # older than the absolute limit
SIGNED_OUT = "signed_out"  # signed out in this browser
INVALIDATED = "invalidated"  # every session of the account ended (password or role change, sign-out)
REPLACED = "replaced"  # this browser signed in again and holds a new session
END_REASONS = (REVOKED, IDLE, EXPIRED, SIGNED_OUT, INVALIDATED, REPLACED)
AUDITED_REASONS = frozenset({REVOKED, IDLE, EXPIRED})
# What the request hook found wrong with a session that is not ended in its row.
MISSING = "missing"  # no token, an unknown token, or a token of another account

EndReason = t.Literal["revoked", "idle", "expired", "signed_out", "invalidated", "replaced"]


class StaffSession(Model):
    """One signed-in browser of a member of staff."""

    __tablename__ = "staff_session"
    __table_args__ = (
        one_of("end_reason", END_REASONS, "end_reason"),
        sa.CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="end_complete"),
        sa.Index("ix_staff_session_staff_user_id_ended_at", "staff_user_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The account's session version when this session began; a later version ends it.
    session_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(sa.String(16))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    # From the User-Agent: "Chrome", "Linux"; "" when not recognised.
    browser: Mapped[str] = mapped_column(sa.String(32), default="")
    system: Mapped[str] = mapped_column(sa.String(32), default="")

    def __str__(self) -> str:
        where = " on ".join(part for part in (self.browser, self.system) if part) or "unknown browser"
        return f"session {self.id} of staff {self.staff_user_id} ({where})"


@dataclass(frozen=True)
class SessionLimits:
    """How long a session may stay unused, and how long it may last at all."""

    idle: timedelta
    lifetime: timedelta

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> SessionLimits:
        """The limits set by SESSION_IDLE_MINUTES and SESSION_ABSOLUTE_HOURS."""
        return cls(
            idle=timedelta(minutes=float(config["SESSION_IDLE_MINUTES"])),
            lifetime=timedelta(hours=float(config["SESSION_ABSOLUTE_HOURS"])),
        )


# Most specific first: Edge and Opera also say Chrome, Chrome also says Safari, Android
# also says Linux, iOS also says Mac OS X.
_BROWSERS = [
    (re.compile(r"\bEdg(e|A|iOS)?/"), "Edge"),
    (re.compile(r"\bOPR/|\bOpera\b"), "Opera"),
    (re.compile(r"\bFirefox/|\bFxiOS/"), "Firefox"),
    (re.compile(r"\bChromium/"), "Chromium"),
    (re.compile(r"\b(Headless)?Chrome/|\bCriOS/"), "Chrome"),
    (re.compile(r"\bVersion/[\d.]+.*\bSafari/"), "Safari"),
]
_SYSTEMS = [
    (re.compile(r"\bAndroid\b"), "Android"),
    (re.compile(r"\biPhone\b|\biPad\b|\biPod\b"), "iOS"),
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bMacintosh\b|\bMac OS X\b"), "macOS"),
    (re.compile(r"\bLinux\b|\bX11\b"), "Linux"),
]


def browser_summary(user_agent: str | None) -> tuple[str, str]:
    """The browser and the operating system a User-Agent names ("" for what is not recognised)."""
    text = (user_agent or "")[:512]
    browser = next((name for pattern, name in _BROWSERS if pattern.search(text)), "")
    system = next((name for pattern, name in _SYSTEMS if pattern.search(text)), "")
    return browser, system


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_staff_session(
    user: StaffUser,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
    replaces: str | None = None,
) -> tuple[StaffSession, str]:
    """A new session for a member of staff who just signed in, and its token (never stored).

    `replaces` is the token this browser held before, whose session ends. Sessions of older
    session versions (ended by a password change, a role change or a sign-out) are marked ended.
    """
    uow = current_uow()
    now = now or utcnow()
    if replaces:
        earlier = find_staff_session(replaces)
        if earlier is not None and earlier.staff_user_id == user.id and earlier.ended_at is None:
            end_staff_session(earlier, REPLACED, now)
    end_invalidated_sessions(user, now)
    token = secrets.token_urlsafe(32)
    browser, system = browser_summary(user_agent)
    record = StaffSession(
        staff_user_id=user.id,
        token_hash=_hash(token),
        session_version=user.session_version,
        created_at=now,
        last_seen_at=now,
        ip=ip[:64] if ip else None,
        browser=browser,
        system=system,
    )
    uow.add(record)
    uow.session.flush()
    return record, token


def find_staff_session(token: str | None) -> StaffSession | None:
    """The session a browser's token belongs to, ended or not (read only)."""
    if not token or not isinstance(token, str) or len(token) > 128:
        return None
    return db.session.scalar(sa.select(StaffSession).where(StaffSession.token_hash == _hash(token)))


def end_reason(
    record: StaffSession | None, user: StaffUser, now: datetime, limits: SessionLimits
) -> str | None:
    """Why this browser's session may not go on (None: it may).

    The reason is the one stored if the session was ended, MISSING without a session of this
    member of staff, INVALIDATED after a session-version change, else IDLE or EXPIRED by time.
    """
    if record is None or record.staff_user_id != user.id:
        return MISSING
    if record.ended_at is not None:
        return record.end_reason
    if record.session_version != user.session_version:
        return INVALIDATED
    if now - record.last_seen_at > limits.idle:
        return IDLE
    if now - record.created_at > limits.lifetime:
        return EXPIRED
    return None


def end_staff_session(record: StaffSession, reason: EndReason | str, now: datetime | None = None) -> bool:
    """End one session in the open unit of work; False if it had ended already.

    Ends by its owner (REVOKED) and by time (IDLE, EXPIRED) are audited here; the other
    reasons follow an action with an audit event of its own.
    """
    if reason not in END_REASONS:
        raise ValueError(f"unknown end reason {reason!r}")
    uow = current_uow()
    ended = uow.session.execute(
        sa.update(StaffSession)
        .where(StaffSession.id == record.id, StaffSession.ended_at.is_(None))
        .values(ended_at=now or utcnow(), end_reason=reason)
        .execution_options(synchronize_session="fetch")
    )
    if not t.cast(sa.CursorResult, ended).rowcount:
        return False
    if reason in AUDITED_REASONS:
        uow.audit("staff_session.end", "staff_session", record.id, ["ended_at", "end_reason"], detail=reason)
    return True


def end_invalidated_sessions(user: StaffUser, now: datetime | None = None) -> int:
    """Mark ended the sessions that an older session version left open; how many there were."""
    current_uow()
    ended = db.session.execute(
        sa.update(StaffSession)
        .where(
            StaffSession.staff_user_id == user.id,
            StaffSession.ended_at.is_(None),
            StaffSession.session_version != user.session_version,
        )
        .values(ended_at=now or utcnow(), end_reason=INVALIDATED)
        .execution_options(synchronize_session=False)
    )
    return t.cast(sa.CursorResult, ended).rowcount


def active_sessions_query(user: StaffUser, now: datetime, limits: SessionLimits) -> sa.Select:
    """The member of staff's sessions that still work, most recently used first."""
    return (
        sa.select(StaffSession)
        .where(
            StaffSession.staff_user_id == user.id,
            StaffSession.ended_at.is_(None),
            StaffSession.session_version == user.session_version,
            StaffSession.last_seen_at >= now - limits.idle,
            StaffSession.created_at >= now - limits.lifetime,
        )
        .order_by(StaffSession.last_seen_at.desc(), StaffSession.id.desc())
    )


def active_sessions(user: StaffUser, now: datetime, limits: SessionLimits) -> list[StaffSession]:
    """The member of staff's sessions that still work, most recently used first (read only)."""
    return list(db.session.scalars(active_sessions_query(user, now, limits)))


def end_session_of(
    user: StaffUser, session_id: int, keep_id: int | None, now: datetime, limits: SessionLimits
) -> bool:
    """A member of staff ends one of their other working sessions; False if there is no such session."""
    record = db.session.scalar(
        active_sessions_query(user, now, limits).where(StaffSession.id == session_id).with_for_update()
    )
    if record is None or record.id == keep_id:
        return False
    return end_staff_session(record, REVOKED, now)


def end_other_sessions(
    user: StaffUser, keep_id: int | None, now: datetime, limits: SessionLimits
) -> list[int]:
    """A member of staff ends every working session but this one; the ids of those ended."""
    query = active_sessions_query(user, now, limits).order_by(None).order_by(StaffSession.id)
    if keep_id is not None:
        query = query.where(StaffSession.id != keep_id)
    ended = []
    for record in db.session.scalars(query.with_for_update()).all():
        if end_staff_session(record, REVOKED, now):
            ended.append(record.id)
    return ended


def touch_staff_session(record: StaffSession, now: datetime, every: timedelta) -> bool:
    """Note that the session was used now, unless that was noted less than `every` ago.

    One conditional UPDATE: of several requests at once, one writes and the others change nothing.
    """
    current_uow()
    touched = db.session.execute(
        sa.update(StaffSession)
        .where(
            StaffSession.id == record.id,
            StaffSession.ended_at.is_(None),
            StaffSession.last_seen_at <= now - every,
        )
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(t.cast(sa.CursorResult, touched).rowcount)


def close_lapsed_sessions(now: datetime, limits: SessionLimits, keep: timedelta) -> dict[str, int]:
    """Housekeeping: mark ended the sessions that lapsed unseen, and delete ended ones older than `keep`.

    Lapsed sessions stop working whether or not this runs; it keeps the table small and its
    rows (with their IP addresses) no longer than `keep`. Lapses are audited like any other.
    """
    current_uow()
    current_version = (
        sa.select(StaffUser.session_version)
        .where(StaffUser.id == StaffSession.staff_user_id)
        .scalar_subquery()
    )
    invalidated = db.session.execute(
        sa.update(StaffSession)
        .where(StaffSession.ended_at.is_(None), StaffSession.session_version != current_version)
        .values(ended_at=now, end_reason=INVALIDATED)
        .execution_options(synchronize_session=False)
    )
    lapsed = db.session.scalars(
        sa.select(StaffSession)
        .where(
            StaffSession.ended_at.is_(None),
            sa.or_(
                StaffSession.last_seen_at < now - limits.idle,
                StaffSession.created_at < now - limits.lifetime,
            ),
        )
        .order_by(StaffSession.id)
    ).all()
    closed = 0
    for record in lapsed:
        reason = IDLE if now - record.last_seen_at > limits.idle else EXPIRED
        closed += end_staff_session(record, reason, now)
    removed = db.session.execute(
        sa.delete(StaffSession)
        .where(StaffSession.ended_at < now - keep)
        .execution_options(synchronize_session=False)
    )
    return {
        "sessions_invalidated": t.cast(sa.CursorResult, invalidated).rowcount,
        "sessions_closed": closed,
        "sessions_removed": t.cast(sa.CursorResult, removed).rowcount,
    }
