"""Staff accounts: roles and their rights, password hashing and the password policy."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import lazy_gettext as _l
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column

from models import UTCDateTime, db, one_of, utcnow

# Argon2id, RFC 9106 "second recommended" profile: 64 MiB, 3 passes, 4 lanes. That is
# above OWASP ASVS 5 / the OWASP cheat sheet minimum (19 MiB, t=2, p=1).
PASSWORD_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, type=Type.ID)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
LANGUAGES = {"en": "English", "zh_Hans_CN": "简体中文"}


@cache
def timezone_names() -> list[str]:
    """IANA time zone names a member of staff can choose from."""
    return sorted(name for name in available_timezones() if "/" in name and not name.startswith("Etc/"))


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"
    ANALYST = "analyst"

    @property
    def label(self) -> str:
        return str(ROLE_LABELS[self])


ROLE_LABELS = {
    Role.ADMIN: _l("Administrator"),
    Role.MANAGER: _l("Manager"),
    Role.AGENT: _l("Agent"),
    Role.ANALYST: _l("Analyst"),
}

ALL_ROLES = frozenset(Role)

# What each right means, and who holds it (DESIGN.md, "Who uses it").
RIGHTS: dict[str, frozenset[Role]] = {
    "dashboard.view": ALL_ROLES,
    "customer.list": ALL_ROLES,
    "customer.view_pii": frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT}),
    "customer.edit": frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT}),
    "customer.export": frozenset({Role.ADMIN, Role.MANAGER, Role.ANALYST}),
    "customer.erase": frozenset({Role.ADMIN, Role.MANAGER}),
    "ticket.view": ALL_ROLES,
    "ticket.work": frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT}),
    "ticket.configure": frozenset({Role.ADMIN}),
    "loyalty.view": ALL_ROLES,
    "loyalty.purchase": frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT}),
    "loyalty.manage": frozenset({Role.ADMIN, Role.MANAGER}),
    "loyalty.configure": frozenset({Role.ADMIN}),
    "survey.view": ALL_ROLES,
    "survey.invite": frozenset({Role.ADMIN, Role.MANAGER, Role.AGENT}),
    "survey.manage": frozenset({Role.ADMIN, Role.MANAGER}),
    "survey.export": frozenset({Role.ADMIN, Role.MANAGER, Role.ANALYST}),
    "staff.manage": frozenset({Role.ADMIN}),
    "audit.view": frozenset({Role.ADMIN}),
}


def role_has(role: Role | str, right: str) -> bool:
    """Whether a role holds a right; unknown rights are held by nobody."""
    return Role(role) in RIGHTS.get(right, frozenset())


class PasswordPolicyError(ValueError):
    """A proposed password breaks the policy; the message says why."""


@cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords (zxcvbn's list), lower-cased."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def check_password_policy(password: str, email: str | None = None) -> None:
    """Raise PasswordPolicyError unless the password is long, uncommon and not the email."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(str(_l("Use at least %(n)d characters.", n=MIN_PASSWORD_LENGTH)))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(str(_l("Use at most %(n)d characters.", n=MAX_PASSWORD_LENGTH)))
    lowered = password.lower()
    if lowered in common_passwords() or (email and lowered == email.lower()):
        raise PasswordPolicyError(str(_l("This password is too common; choose another.")))
    if len(set(password)) < 4:
        raise PasswordPolicyError(str(_l("This password repeats too few characters.")))


class StaffUser(UserMixin, db.Model):
    """A member of staff who signs in to the panel."""

    __tablename__ = "staff_user"
    __table_args__ = (one_of("role", Role, "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(100), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    language: Mapped[str | None] = mapped_column(sa.String(16))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped on logout, password change and role change: every older session dies.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return self.display_name or self.email

    # Flask-Login: the session stores "id:version", so a bumped version logs the cookie out.
    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def can(self, right: str) -> bool:
        """Whether this member of staff holds a right."""
        return self.is_active and role_has(self.role, right)

    def set_password(self, password: str) -> None:
        """Check the policy, hash with argon2id and end every existing session."""
        check_password_policy(password, self.email)
        self.password_hash = PASSWORD_HASHER.hash(password)
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        """Verify a password, upgrading the hash when the parameters have been raised."""
        try:
            PASSWORD_HASHER.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        if PASSWORD_HASHER.check_needs_rehash(self.password_hash):
            self.password_hash = PASSWORD_HASHER.hash(password)
        return True

    def end_sessions(self) -> None:
        """Invalidate every session cookie issued for this account so far."""
        self.session_version = (self.session_version or 0) + 1


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the email is unknown, so such a login takes as long.

    Made on first use, not at import: every worker and command would pay for it otherwise.
    """
    return PASSWORD_HASHER.hash("not-a-real-password-just-timing")


def authenticate(email: str, password: str) -> StaffUser | None:
    """The active staff member with these credentials, or None."""
    user = db.session.scalar(
        sa.select(StaffUser).where(sa.func.lower(StaffUser.email) == email.strip().lower())
    )
    if user is None or not user.active:
        try:
            PASSWORD_HASHER.verify(_dummy_hash(), password)
        except VerificationError:
            pass
        return None
    return user if user.check_password(password) else None


def load_session_user(session_id: str) -> StaffUser | None:
    """Flask-Login loader: the user only if the cookie's session version is current."""
    user_id, _, version = session_id.partition(":")
    try:
        user = db.session.get(StaffUser, int(user_id))
    except ValueError:
        return None
    if user is None or not user.active or str(user.session_version) != version:
        return None
    return user


def check_admin_remains(user: StaffUser) -> None:
    """Refuse a change that would leave no active admin (nobody could manage staff again)."""
    if user.role == Role.ADMIN and user.active:
        return
    others = db.session.scalar(
        sa.select(sa.func.count(StaffUser.id)).where(
            StaffUser.role == Role.ADMIN.value, StaffUser.active.is_(True), StaffUser.id != user.id
        )
    )
    if not others:
        raise ValueError(str(_l("At least one active administrator must remain.")))


def create_staff_user(email: str, password: str, role: Role | str, display_name: str = "") -> StaffUser:
    """Create a staff account (the caller commits)."""
    email = email.strip().lower()
    if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)):
        raise ValueError(f"a staff account for {email} exists already")
    user = StaffUser(email=email, role=str(Role(role)), display_name=display_name, session_version=1)
    user.set_password(password)
    db.session.add(user)
    return user
