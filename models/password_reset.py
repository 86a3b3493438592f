"""Password reset links for staff: single-use, expiring, stored only as a hash.

A link is made for one account by an admin (from the Staff list), by `flask reset-password
EMAIL`, or, once the outbox exists, mailed to the member of staff who asked for it. Until
then a request made on the sign-in page is only recorded (audited) for an admin to act on.

The link carries a random token (256 bits); the row keeps its SHA-256 only. A newer link
replaces the account's older unused ones. Using a link sets the new password (the policy
applies), ends every session of the account, clears its sign-in throttles and is audited;
two-factor sign-in is left as it was, so it is still asked for at the next sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
import typing as t
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of, utcnow
from models.sign_in_guard import clear_account_throttles
from models.staff_session import end_invalidated_sessions
from models.uow import current_uow
from models.user import StaffUser

LINK_MINUTES = 30
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 100
USED = "used"
REPLACED = "replaced"
END_REASONS = (USED, REPLACED)
SOURCES = ("admin", "cli", "mail")


class PasswordResetError(ValueError):
    """A link that cannot be used (unknown, used, replaced or expired); the message says so."""


class PasswordReset(Model):
    """One password reset link of a staff account."""

    __tablename__ = "staff_password_reset"
    __table_args__ = (
        one_of("end_reason", END_REASONS, "end_reason"),
        one_of("source", SOURCES, "source"),
        sa.CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="end_complete"),
        sa.CheckConstraint("expires_at > created_at", name="expires_after_created"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    # The admin who made the link (None from the command line).
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(sa.String(16))

    def __str__(self) -> str:
        return f"password reset link {self.id} of staff {self.staff_user_id}"

    def usable(self, now: datetime) -> bool:
        return self.ended_at is None and self.expires_at > now


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_staff(email: str) -> StaffUser | None:
    """The staff account of an email (any case), or None (read only)."""
    normalised = email.strip().lower()
    return db.session.scalar(sa.select(StaffUser).where(sa.func.lower(StaffUser.email) == normalised))


def issue_password_reset(
    user: StaffUser,
    source: str,
    created_by: StaffUser | None = None,
    now: datetime | None = None,
    minutes: int = LINK_MINUTES,
) -> tuple[PasswordReset, str]:
    """A new link for the account, in the open unit of work; returns it and its token (never stored).

    The account's earlier unused links stop working. Audited as "password_reset.create".
    """
    uow = current_uow()
    now = now or utcnow()
    if not user.active:
        raise PasswordResetError(str(_l("This account is deactivated; reactivate it first.")))
    uow.session.execute(
        sa.update(PasswordReset)
        .where(PasswordReset.staff_user_id == user.id, PasswordReset.ended_at.is_(None))
        .values(ended_at=now, end_reason=REPLACED)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    reset = PasswordReset(
        staff_user_id=user.id,
        token_hash=hash_token(token),
        source=source,
        created_by_id=created_by.id if created_by is not None else None,
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    uow.add(reset)
    uow.session.flush()
    uow.audit("password_reset.create", "staff", user.id, ["staff_password_reset"], detail=f"by={source}")
    return reset, token


def find_password_reset(token: str | None, now: datetime | None = None) -> PasswordReset | None:
    """The usable link of a token (not used, not replaced, not expired, its account active), or None."""
    if not token or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    reset = db.session.scalar(sa.select(PasswordReset).where(PasswordReset.token_hash == hash_token(token)))
    if reset is None or not reset.usable(now or utcnow()):
        return None
    user = db.session.get(StaffUser, reset.staff_user_id)
    return reset if user is not None and user.active else None


def reset_password(token: str, new_password: str, now: datetime | None = None) -> StaffUser:
    """Set a new password through a link, in the open unit of work; the link then stops working.

    The policy is checked (PasswordPolicyError), every session of the account ends, its
    sign-in throttles are cleared; audited as "password.reset". Raises PasswordResetError
    for a link that is not usable (also when another request used it a moment before).
    """
    uow = current_uow()
    now = now or utcnow()
    reset = find_password_reset(token, now)
    if reset is None:
        raise PasswordResetError(str(_l("This link is not valid any more. Ask for a new one.")))
    user = db.session.get(StaffUser, reset.staff_user_id)
    assert user is not None  # find_password_reset checked it
    user.set_password(new_password)  # the policy; bumps the session version
    # Claimed with a conditional update: of two requests with the same link, one wins.
    claimed = uow.session.execute(
        sa.update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.ended_at.is_(None))
        .values(ended_at=now, end_reason=USED)
        .execution_options(synchronize_session=False)
    )
    if not t.cast(sa.CursorResult, claimed).rowcount:
        raise PasswordResetError(str(_l("This link is not valid any more. Ask for a new one.")))
    uow.session.flush()
    end_invalidated_sessions(user, now)
    uow.audit("password.reset", "staff", user.id, ["password_hash", "session_version"])
    clear_account_throttles(user.email, reason="password-reset")
    return user


def record_reset_request(email: str) -> None:
    """Audit a "forgot password" request from the sign-in page, never naming an unknown email.

    Nothing else happens yet: without an outbox the link cannot be mailed, so an admin makes
    one (Staff list, or `flask reset-password EMAIL`) when the member of staff asks.
    """
    user = find_staff(email)
    known = user is not None and user.active
    detail = "known account" if known else "unknown account"
    current_uow().audit("password_reset.request", "staff", user.id if known and user else None, detail=detail)
