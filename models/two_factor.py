"""Two-factor sign-in for staff: a TOTP secret sealed at rest, recovery codes, trusted browsers.

- The TOTP secret (RFC 6238: 6 digits, 30-second steps, one step of drift either way) is
  sealed with the key ring like customer data ("staff_two_factor.secret"), so key rotation
  re-seals it with everything else.
- A code is accepted once: the last accepted time step is kept per member of staff and the
  step is moved on by one conditional UPDATE, so a replay (even a concurrent one) finds no row.
- Recovery codes are single-use; only their keyed HMAC is stored, and a code is spent by one
  conditional UPDATE as well.
- A trusted browser holds a random token in a signed cookie, the row only the token's keyed
  HMAC; it marks a browser that completed a two-factor sign-in for this account, so that the
  sign-in throttles (models/sign_in_guard.py) do not hold it back. It is revoked by deleting
  its row. It never replaces the second factor.
"""

from __future__ import annotations

import hmac
import secrets
import typing as t
from datetime import datetime, timedelta

import pyotp
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, utcnow
from models.crypto import EncryptedText, UnreadableValue, keyring
from models.uow import current_uow
from models.user import Role, StaffUser

TOTP_DIGITS = 6
TOTP_INTERVAL = 30
# Steps accepted either side of the current one: a phone clock a little off still works.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
# Lower-case letters and digits without the look-alikes (0/o, 1/l/i): 31**10, about 50 bits.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 10
DEFAULT_REQUIRED_ROLES = ("admin", "manager")
DEFAULT_TRUSTED_DEVICE_DAYS = 90
DEFAULT_ISSUER = "Patron"

SecondFactor = t.Literal["totp", "recovery"]


class TwoFactorError(ValueError):
    """A two-factor change that the rules refuse; the message says why."""


class StaffTwoFactor(Model):
    """A member of staff's authenticator app: the sealed secret and the last step accepted."""

    __tablename__ = "staff_two_factor"

    staff_user_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(EncryptedText("staff_two_factor.secret"))
    enabled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last TOTP time step accepted: a code of this step or of an earlier one is refused.
    last_step: Mapped[int | None] = mapped_column(sa.BigInteger)

    def __str__(self) -> str:
        return f"two-factor of staff {self.staff_user_id}"


class RecoveryCode(Model):
    """One single-use recovery code, stored as its keyed HMAC only."""

    __tablename__ = "staff_recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return f"recovery code {self.id}"


class TrustedDevice(Model):
    """A browser that completed a two-factor sign-in for one account (its token's HMAC only)."""

    __tablename__ = "trusted_device"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return f"trusted browser {self.id}"


# Who must use it --------------------------------------------------------------------------


def required_roles() -> frozenset[str]:
    """Roles that must sign in with two factors (TWO_FACTOR_REQUIRED_ROLES; "*" means all)."""
    configured = current_app.config.get("TWO_FACTOR_REQUIRED_ROLES", DEFAULT_REQUIRED_ROLES)
    if isinstance(configured, str):
        configured = [part.strip() for part in configured.split(",") if part.strip()]
    roles = set(configured or ())
    return frozenset(r.value for r in Role) if "*" in roles else frozenset(roles)


def two_factor_required(user: StaffUser) -> bool:
    """Whether this member of staff's role must use two-factor sign-in."""
    return user.role in required_roles()


def two_factor_of(user: StaffUser) -> StaffTwoFactor | None:
    """The member of staff's authenticator, if they enrolled one."""
    return db.session.get(StaffTwoFactor, user.id)


def has_two_factor(user: StaffUser) -> bool:
    return two_factor_of(user) is not None


def users_with_two_factor(user_ids: t.Iterable[int]) -> set[int]:
    """Which of these accounts have two-factor sign-in on (for a list of staff)."""
    ids = list(user_ids)
    if not ids:
        return set()
    query = sa.select(StaffTwoFactor.staff_user_id).where(StaffTwoFactor.staff_user_id.in_(ids))
    return set(db.session.scalars(query))


# TOTP ---------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh TOTP secret: 160 random bits in base32 (what authenticator apps expect)."""
    return pyotp.random_base32(32)


def seal_candidate(user: StaffUser, secret: str) -> str:
    """A secret offered for enrolment, sealed for the browser's session until it is confirmed.

    Bound to the account: a sealed candidate of one account does not open for another.
    """
    return keyring().seal(secret, f"staff_two_factor.candidate:{user.id}")


def open_candidate(user: StaffUser, sealed: object) -> str | None:
    """The secret inside a sealed candidate, or None if it is missing, another's or tampered with."""
    if not isinstance(sealed, str):
        return None
    try:
        return keyring().open(sealed, f"staff_two_factor.candidate:{user.id}")
    except (UnreadableValue, ValueError):
        return None


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    issuer = current_app.config.get("TWO_FACTOR_ISSUER", DEFAULT_ISSUER)
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def normalise_code(code: str) -> str:
    """A typed code without spaces or dashes, lower-case."""
    return "".join(ch for ch in (code or "") if ch not in " -\t").lower()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (within the window around `now`) whose TOTP code is `code`, if any."""
    code = normalise_code(code)
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
    current = totp.timecode(now)
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _use_step(user_id: int, step: int) -> bool:
    """Move the account's last accepted step on to `step`; False if it was used already."""
    moved = db.session.execute(
        sa.update(StaffTwoFactor)
        .where(
            StaffTwoFactor.staff_user_id == user_id,
            sa.or_(StaffTwoFactor.last_step.is_(None), StaffTwoFactor.last_step < step),
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    return t.cast(sa.CursorResult, moved).rowcount == 1


# Recovery codes -------------------------------------------------------------------------------


def _recovery_hash(user_id: int, code: str) -> str:
    return keyring().blind_index("staff.recovery_code", f"{user_id}:{normalise_code(code)}")


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _issue_recovery_codes(user_id: int) -> list[str]:
    """Replace the account's recovery codes with new ones; the plain codes are returned once."""
    db.session.execute(
        sa.delete(RecoveryCode)
        .where(RecoveryCode.staff_user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        current_uow().add(RecoveryCode(staff_user_id=user_id, code_hash=_recovery_hash(user_id, code)))
    return codes


def recovery_codes_left(user: StaffUser) -> int:
    """How many unused recovery codes the member of staff has."""
    query = sa.select(sa.func.count(RecoveryCode.id)).where(
        RecoveryCode.staff_user_id == user.id, RecoveryCode.used_at.is_(None)
    )
    return db.session.scalar(query) or 0


def _spend_recovery_code(user_id: int, code: str, now: datetime) -> bool:
    """Mark a recovery code used; False if it is unknown or was used before."""
    if len(normalise_code(code)) != RECOVERY_CODE_LENGTH:
        return False
    spent = db.session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.staff_user_id == user_id,
            RecoveryCode.code_hash == _recovery_hash(user_id, code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return t.cast(sa.CursorResult, spent).rowcount == 1


# Enrolment and sign-in ------------------------------------------------------------------------


def enable_two_factor(
    user: StaffUser, secret: str, code: str, now: datetime | None = None
) -> list[str] | None:
    """Turn two-factor sign-in on with a secret the member of staff's app shows `code` for.

    Returns the new recovery codes (shown once), or None if the code does not match.
    """
    uow = current_uow()
    now = now or utcnow()
    if two_factor_of(user) is not None:
        raise TwoFactorError("two-factor sign-in is on already")
    step = matching_step(secret, code, now)
    if step is None:
        return None
    uow.add(StaffTwoFactor(staff_user_id=user.id, secret=secret, enabled_at=now, last_step=step))
    codes = _issue_recovery_codes(user.id)
    uow.session.flush()
    uow.audit("two_factor.enable", "staff", user.id, ["secret", "recovery_codes"])
    return codes


def verify_second_factor(user: StaffUser, code: str, now: datetime | None = None) -> SecondFactor | None:
    """Accept a TOTP code (once) or an unused recovery code; None when neither holds.

    Writes only when a code is accepted (the step moved on, or the recovery code spent).
    """
    uow = current_uow()
    now = now or utcnow()
    two_factor = two_factor_of(user)
    if two_factor is None:
        return None
    step = matching_step(two_factor.secret, code, now)
    if step is not None:
        return "totp" if _use_step(user.id, step) else None
    if _spend_recovery_code(user.id, code, now):
        uow.audit("two_factor.recovery_code_used", "staff", user.id, ["recovery_codes"])
        return "recovery"
    return None


def accept_totp(user: StaffUser, code: str, now: datetime | None = None) -> bool:
    """Accept a current TOTP code (once) to confirm a change; recovery codes do not count here."""
    current_uow()
    two_factor = two_factor_of(user)
    if two_factor is None:
        return False
    step = matching_step(two_factor.secret, code, now or utcnow())
    return step is not None and _use_step(user.id, step)


def regenerate_recovery_codes(user: StaffUser) -> list[str]:
    """New recovery codes for the member of staff; the old ones stop working."""
    if two_factor_of(user) is None:
        raise TwoFactorError("two-factor sign-in is off")
    codes = _issue_recovery_codes(user.id)
    current_uow().audit("two_factor.recovery_codes", "staff", user.id, ["recovery_codes"])
    return codes


def _remove_two_factor(user: StaffUser) -> None:
    for model in (RecoveryCode, StaffTwoFactor, TrustedDevice):
        db.session.execute(
            sa.delete(model)
            .where(model.staff_user_id == user.id)
            .execution_options(synchronize_session=False)
        )


def disable_two_factor(user: StaffUser) -> None:
    """The member of staff turns two-factor sign-in off (not allowed where their role needs it)."""
    if two_factor_required(user):
        raise TwoFactorError("two-factor sign-in is required for this role")
    if two_factor_of(user) is None:
        raise TwoFactorError("two-factor sign-in is off")
    _remove_two_factor(user)
    current_uow().audit(
        "two_factor.disable", "staff", user.id, ["secret", "recovery_codes", "trusted_devices"]
    )


def reset_two_factor(user: StaffUser) -> bool:
    """An admin (or the command line) removes someone's two-factor sign-in and ends their sessions.

    Their trusted browsers are forgotten too; at the next sign-in they enrol again if their
    role requires it. Audited even when there was nothing to remove. Returns whether there was.
    """
    had = two_factor_of(user) is not None
    _remove_two_factor(user)
    user.end_sessions()
    current_uow().audit(
        "two_factor.reset",
        "staff",
        user.id,
        ["secret", "recovery_codes", "trusted_devices", "session_version"],
        detail="" if had else "not enrolled",
    )
    return had


# Trusted browsers -----------------------------------------------------------------------------


def _device_hash(token: str) -> str:
    return keyring().blind_index("staff.trusted_device", token)


def trusted_device_days() -> int:
    return int(current_app.config.get("TRUSTED_DEVICE_DAYS", DEFAULT_TRUSTED_DEVICE_DAYS))


def trust_device(user: StaffUser, now: datetime | None = None) -> str:
    """Remember this browser for the account; returns the token for its cookie (shown once)."""
    uow = current_uow()
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    device = uow.add(
        TrustedDevice(
            staff_user_id=user.id,
            token_hash=_device_hash(token),
            created_at=now,
            expires_at=now + timedelta(days=trusted_device_days()),
            last_used_at=now,
        )
    )
    uow.session.flush()
    uow.audit("trusted_device.add", "staff", user.id, ["trusted_devices"], detail=f"device={device.id}")
    return token


def known_device(token: str | None, email: str, now: datetime | None = None) -> TrustedDevice | None:
    """The trusted browser this token names, if it is current and belongs to this email's account."""
    if not token:
        return None
    now = now or utcnow()
    query = (
        sa.select(TrustedDevice)
        .join(StaffUser, StaffUser.id == TrustedDevice.staff_user_id)
        .where(
            TrustedDevice.token_hash == _device_hash(token),
            TrustedDevice.expires_at > now,
            sa.func.lower(StaffUser.email) == email.strip().lower(),
            StaffUser.active.is_(True),
        )
    )
    return db.session.scalar(query)


def touch_device(device_id: int, now: datetime | None = None) -> None:
    """Note that a trusted browser was used to sign in."""
    db.session.execute(
        sa.update(TrustedDevice)
        .where(TrustedDevice.id == device_id)
        .values(last_used_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def trusted_device_count(user: StaffUser, now: datetime | None = None) -> int:
    query = sa.select(sa.func.count(TrustedDevice.id)).where(
        TrustedDevice.staff_user_id == user.id, TrustedDevice.expires_at > (now or utcnow())
    )
    return db.session.scalar(query) or 0


def forget_devices(user: StaffUser) -> int:
    """Revoke every trusted browser of the account; returns how many there were."""
    removed = db.session.execute(
        sa.delete(TrustedDevice)
        .where(TrustedDevice.staff_user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    count = t.cast(sa.CursorResult, removed).rowcount
    current_uow().audit(
        "trusted_device.forget", "staff", user.id, ["trusted_devices"], detail=f"count={count}"
    )
    return count
