"""Sign-in throttles: growing delays per address, per account and per trusted browser.

Failed sign-ins (a wrong password, or a wrong second-factor code) are counted in the
database, so that every worker on every host sees the same count. The first few failures
of a key are free; each further one locks the key for a delay that doubles, up to a cap.
A key is a keyed HMAC (the key ring's blind index) of the client's address (IPv6 by its
/64), of the typed email, or of a trusted browser's id: no address and no email is stored
in plain text, and an email that has no account is counted exactly like one that has.

A browser that completed a two-factor sign-in for the account (a trusted device,
models/two_factor.py) is held back by its own count only: a stranger failing against an
account, from any address, does not stop its owner signing in from such a browser.

Every lock (a failure that starts a delay) and every unlock (an admin clearing a throttle,
or a successful sign-in clearing its account's count) is audited, never naming the email
or the address.
"""

from __future__ import annotations

import ipaddress
import math
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of, utcnow
from models.crypto import keyring
from models.uow import current_uow
from models.user import StaffUser

ADDRESS = "address"
ACCOUNT = "account"
DEVICE = "device"
SCOPES = (ADDRESS, ACCOUNT, DEVICE)
Scope = t.Literal["address", "account", "device"]


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free per kind of key, the first delay, the cap, when counts are forgotten."""

    free_per_address: int = 10
    free_per_account: int = 3
    free_per_device: int = 5
    first_delay_seconds: int = 2
    max_delay_seconds: int = 900
    forget_after_hours: int = 24

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> ThrottlePolicy:
        defaults = cls()
        return cls(
            free_per_address=int(config.get("SIGN_IN_FREE_FAILURES_PER_ADDRESS", defaults.free_per_address)),
            free_per_account=int(config.get("SIGN_IN_FREE_FAILURES_PER_ACCOUNT", defaults.free_per_account)),
            free_per_device=int(config.get("SIGN_IN_FREE_FAILURES_PER_DEVICE", defaults.free_per_device)),
            first_delay_seconds=int(config.get("SIGN_IN_FIRST_DELAY_SECONDS", defaults.first_delay_seconds)),
            max_delay_seconds=int(config.get("SIGN_IN_MAX_DELAY_SECONDS", defaults.max_delay_seconds)),
            forget_after_hours=int(config.get("SIGN_IN_FORGET_FAILURES_HOURS", defaults.forget_after_hours)),
        )

    def free(self, scope: str) -> int:
        return {ADDRESS: self.free_per_address, ACCOUNT: self.free_per_account}.get(
            scope, self.free_per_device
        )

    def delay(self, scope: str, failures: int) -> int:
        """Seconds a key is locked after its `failures`-th failure: 0, then doubling up to the cap."""
        over = failures - self.free(scope)
        if over <= 0:
            return 0
        return min(self.max_delay_seconds, self.first_delay_seconds * 2 ** min(over - 1, 40))

    @property
    def forget_after(self) -> timedelta:
        return timedelta(hours=self.forget_after_hours)


def policy() -> ThrottlePolicy:
    return ThrottlePolicy.from_config(current_app.config)


class SignInThrottle(Model):
    """The failure count and lock of one key (an address, an account or a trusted browser)."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (
        one_of("scope", SCOPES, "scope"),
        sa.UniqueConstraint("scope", "key_hash", name="uq_sign_in_throttle_scope_key_hash"),
        sa.CheckConstraint("failures >= 0", name="failures_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    # For admins to recognise a throttle: the account it concerns (when the email has one, or
    # the trusted browser's owner), or the address's network (its last part dropped).
    staff_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    network: Mapped[str | None] = mapped_column(sa.String(64))
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return f"{self.scope} throttle {self.id}"

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


# Keys ---------------------------------------------------------------------------------------


def address_key(address: str | None) -> str:
    """The HMAC of a client address (an IPv6 address by its /64: one host holds all of it)."""
    return keyring().blind_index("sign_in.address", _address_unit(address))


def _address_unit(address: str | None) -> str:
    ip = _parsed(address)
    if ip is None:
        return (address or "unknown")[:64]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _parsed(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4 address mapped into IPv6 as the IPv4 address it is."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_network(address: str | None) -> str | None:
    """The network an address belongs to, with the part that names one host dropped (/24, /48)."""
    ip = _parsed(address)
    if ip is None:
        return None
    return str(ipaddress.ip_network(f"{ip}/{48 if ip.version == 6 else 24}", strict=False))


def account_key(email: str) -> str:
    """The HMAC of a typed email, normalised as accounts are looked up."""
    return keyring().blind_index("sign_in.account", (email or "").strip().lower())


def device_key(device_id: int) -> str:
    return keyring().blind_index("sign_in.device", str(device_id))


def _staff_id_for(email: str) -> int | None:
    query = sa.select(StaffUser.id).where(sa.func.lower(StaffUser.email) == (email or "").strip().lower())
    return db.session.scalar(query)


# Reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """Who is trying to sign in: the client's address, the email typed, the trusted browser if any."""

    address: str | None
    email: str
    device_id: int | None = None
    device_owner_id: int | None = None

    def keys(self) -> list[tuple[str, str]]:
        """(scope, key) of every throttle this attempt answers to."""
        if self.device_id is not None:
            return [(DEVICE, device_key(self.device_id))]
        return [(ADDRESS, address_key(self.address)), (ACCOUNT, account_key(self.email))]


def wait_seconds(attempt: Attempt, now: datetime | None = None) -> int:
    """Seconds until this attempt may be made (0: now). Read only; nothing is counted."""
    now = now or utcnow()
    conditions = [sa.and_(SignInThrottle.scope == s, SignInThrottle.key_hash == k) for s, k in attempt.keys()]
    query = sa.select(sa.func.max(SignInThrottle.locked_until)).where(
        sa.or_(*conditions), SignInThrottle.locked_until > now
    )
    until = db.session.scalar(query)
    if until is None:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def current_throttles(now: datetime | None = None) -> list[SignInThrottle]:
    """Throttles that hold back or still count: locked now, or failed within the forget window."""
    now = now or utcnow()
    query = (
        sa.select(SignInThrottle)
        .where(
            sa.or_(
                SignInThrottle.locked_until > now,
                SignInThrottle.last_failure_at > now - policy().forget_after,
            )
        )
        .order_by(SignInThrottle.locked_until.desc().nulls_last(), SignInThrottle.last_failure_at.desc())
    )
    return list(db.session.scalars(query))


# Writing --------------------------------------------------------------------------------------


def _upsert(table: sa.Table, values: dict, update: dict) -> sa.Row:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_update(index_elements=["scope", "key_hash"], set_=update)
        .returning(table.c.id, table.c.failures, table.c.locked_until)
    )
    return db.session.execute(statement).one()


def _count_failure(scope: str, key: str, now: datetime, label: dict) -> tuple[int, int, int]:
    """Count one failure against a key (safe under concurrency); returns (id, failures, delay)."""
    rules = policy()
    table = SignInThrottle.__table__
    stale = table.c.last_failure_at < now - rules.forget_after
    values = {"scope": scope, "key_hash": key, "failures": 1, "first_failure_at": now, "last_failure_at": now}
    update = {
        # After a quiet spell the count starts again.
        "failures": sa.case((stale, 1), else_=table.c.failures + 1),
        "first_failure_at": sa.case((stale, sa.literal(now, UTCDateTime())), else_=table.c.first_failure_at),
        "last_failure_at": now,
    }
    row = _upsert(table, values | label, update | label)
    delay = rules.delay(scope, row.failures)
    if delay:
        db.session.execute(
            sa.update(table).where(table.c.id == row.id).values(locked_until=now + timedelta(seconds=delay))
        )
    return row.id, row.failures, delay


def record_failure(attempt: Attempt, now: datetime | None = None) -> int:
    """Count a failed sign-in against each throttle of the attempt; returns the longest new delay.

    Each lock it starts is audited as "sign_in.lock" (the kind of key, the count, the delay).
    """
    uow = current_uow()
    now = now or utcnow()
    longest = 0
    for scope, key in attempt.keys():
        label: dict[str, t.Any]
        if scope == ADDRESS:
            label = {"network": address_network(attempt.address)}
        elif scope == DEVICE:
            label = {"staff_user_id": attempt.device_owner_id}
        else:
            label = {"staff_user_id": _staff_id_for(attempt.email)}
        throttle_id, failures, delay = _count_failure(scope, key, now, label)
        if delay:
            uow.audit(
                "sign_in.lock",
                "sign_in_throttle",
                throttle_id,
                detail=f"scope={scope} failures={failures} seconds={delay}",
            )
        longest = max(longest, delay)
    _forget_stale(now)
    return longest


def _forget_stale(now: datetime) -> None:
    """Drop counts nobody needs any more: not locked, last failure past the forget window."""
    table = SignInThrottle.__table__
    db.session.execute(
        sa.delete(table).where(
            table.c.last_failure_at < now - policy().forget_after,
            sa.or_(table.c.locked_until.is_(None), table.c.locked_until <= now),
        )
    )


def _clear(throttle: SignInThrottle, reason: str) -> None:
    """Remove one throttle and audit its unlock."""
    uow = current_uow()
    uow.audit(
        "sign_in.unlock",
        "sign_in_throttle",
        throttle.id,
        detail=f"scope={throttle.scope} failures={throttle.failures} by={reason}",
    )
    uow.session.delete(throttle)


def clear_throttle(throttle_id: int) -> bool:
    """An admin clears one throttle (audited as "sign_in.unlock"); False if it had gone already."""
    throttle = db.session.get(SignInThrottle, throttle_id, with_for_update=True)
    if throttle is None:
        return False
    _clear(throttle, "admin")
    return True


def clear_all_throttles() -> int:
    """An admin clears every throttle, each audited; returns how many there were."""
    throttles = list(db.session.scalars(sa.select(SignInThrottle).with_for_update()))
    for throttle in throttles:
        _clear(throttle, "admin")
    return len(throttles)


def clear_account_throttles(email: str, reason: str = "cli") -> int:
    """Clear the throttles of one account (the command line's unlock); returns how many."""
    user_id = _staff_id_for(email)
    conditions = [sa.and_(SignInThrottle.scope == ACCOUNT, SignInThrottle.key_hash == account_key(email))]
    if user_id is not None:
        conditions.append(sa.and_(SignInThrottle.scope == DEVICE, SignInThrottle.staff_user_id == user_id))
    throttles = list(
        db.session.scalars(sa.select(SignInThrottle).where(sa.or_(*conditions)).with_for_update())
    )
    for throttle in throttles:
        _clear(throttle, reason)
    return len(throttles)


def record_success(attempt: Attempt) -> None:
    """A complete sign-in: its account's count (or its trusted browser's) starts again.

    The address's count stays: one good account must not wipe out guesses made at others.
    """
    for scope, key in attempt.keys():
        if scope == ADDRESS:
            continue
        throttle = db.session.scalar(
            sa.select(SignInThrottle).where(SignInThrottle.scope == scope, SignInThrottle.key_hash == key)
        )
        if throttle is None:
            continue
        if throttle.locked_until is not None:
            _clear(throttle, "sign-in")
        else:
            current_uow().session.delete(throttle)
