"""Staff accounts: roles and their rights, password hashing and the password policy."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of, utcnow
from models.uow import current_uow

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


ROLE_LABELS: dict[str, LazyString] = {
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
    "jobs.view": frozenset({Role.ADMIN}),
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


class StaffUser(UserMixin, Model):
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
        """Verify a password (read only: sign_in() upgrades an outdated hash)."""
        try:
            PASSWORD_HASHER.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
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
    """The active staff member with these credentials, or None (read only)."""
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
    """Create a staff account in the open unit of work, audited."""
    uow = current_uow()
    email = email.strip().lower()
    if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)):
        raise ValueError(f"a staff account for {email} exists already")
    user = StaffUser(email=email, role=str(Role(role)), display_name=display_name, session_version=1)
    user.set_password(password)
    uow.add(user)
    uow.session.flush()
    uow.audit("staff.create", "staff", user.id, ["email", "role", "display_name", "password_hash"])
    return user


def prepare_staff_account(user: StaffUser, new_password: str | None, is_created: bool) -> None:
    """The rules of a staff account saved by an admin, before its audit event.

    The email is kept lower-case; a new account needs a password; a change of role or of
    the active flag may not leave the panel without an active admin, and it ends every
    session of the account, so that the new rights apply at once.
    """
    current_uow()
    user.email = user.email.strip().lower()
    user.language = user.language or None
    if new_password:
        user.set_password(new_password)
    elif is_created:
        raise PasswordPolicyError(str(_l("A new account needs a password.")))
    if not is_created:
        state: sa.orm.InstanceState[StaffUser] = sa.inspect(user)
        if state.attrs.role.history.has_changes() or state.attrs.active.history.has_changes():
            check_admin_remains(user)
            user.end_sessions()


def password_needs_rehash(user: StaffUser) -> bool:
    """Whether the stored hash was made with weaker parameters than today's."""
    return PASSWORD_HASHER.check_needs_rehash(user.password_hash)


def upgrade_password_hash(user: StaffUser, password: str) -> None:
    """Re-hash a verified password with today's parameters (at the password step of a sign-in)."""
    user.password_hash = PASSWORD_HASHER.hash(password)
    current_uow().audit("password.rehash", "staff", user.id, ["password_hash"])


def sign_in(
    user: StaffUser,
    password: str | None = None,
    now: datetime | None = None,
    second_factor: str | None = None,
) -> None:
    """Record a successful sign-in: the time, an upgraded hash if the parameters rose, the audit event.

    `password` is given when the password was the last step (so that an outdated hash can be
    upgraded); `second_factor` names the second step ("totp", "recovery") when there was one.
    """
    uow = current_uow()
    user.last_login_at = now or utcnow()
    if password is not None and password_needs_rehash(user):
        user.password_hash = PASSWORD_HASHER.hash(password)
    uow.audit("login", "staff", user.id, detail=second_factor or "")


def record_failed_sign_in(email: str) -> None:
    """Audit a refused sign-in, never the password.

    The email is named only when it is a staff account's: anything else typed there (a
    stranger's guess, a password typed into the wrong field) is not written down.
    """
    normalised = email.strip().lower()
    user_id = db.session.scalar(sa.select(StaffUser.id).where(sa.func.lower(StaffUser.email) == normalised))
    detail = normalised[:200] if user_id is not None else "unknown account"
    current_uow().audit("login.failed", "staff", user_id, detail=detail)


def record_failed_second_factor(user: StaffUser) -> None:
    """Audit a wrong (or replayed) second-factor code at sign-in."""
    current_uow().audit("login.code_failed", "staff", user.id)


def sign_out(user: StaffUser) -> None:
    """End every session of the account and audit the sign-out."""
    user.end_sessions()
    current_uow().audit("logout", "staff", user.id)


def change_password(user: StaffUser, new_password: str) -> None:
    """A member of staff's own password change: policy checked, other sessions ended, audited."""
    user.set_password(new_password)
    current_uow().audit("password.change", "staff", user.id, ["password_hash"])


def set_preferences(user: StaffUser, language: str | None, timezone: str | None) -> None:
    """A member of staff's own interface language and time zone, audited."""
    user.language = language or None
    user.timezone = timezone or None
    current_uow().audit("staff.edit", "staff", user.id, ["language", "timezone"])
