"""API keys for shops and POS systems: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, utcnow
from models.uow import current_uow

SCOPES = {
    "purchases:write": _l("Post purchases and refunds"),
    "points:read": _l("Read balances, tiers and ledgers"),
    "redemptions:write": _l("Redeem rewards"),
}
KEY_PREFIX = "ptr"


class ApiKey(Model):
    """One integration's key. Only a SHA-256 of the secret is kept (it has 256 random bits)."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    # Purchases posted with this key are unique per (source, order reference).
    source: Mapped[str] = mapped_column(sa.String(32))
    lookup: Mapped[str] = mapped_column(sa.String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return f"{self.name} ({KEY_PREFIX}_{self.lookup}…)"

    @property
    def scope_set(self) -> set[str]:
        return {s for s in self.scopes.split(",") if s}

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(name: str, source: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key and its full text, shown once and never stored, in the caller's unit of work."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    if not source or not source.replace("-", "").replace("_", "").isalnum() or len(source) > 32:
        raise ValueError("the source is a short name of letters, digits, - and _")
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        name=name.strip(),
        source=source,
        lookup=lookup,
        secret_hash=_hash(secret),
        scopes=",".join(sorted(set(scopes))),
    )
    uow = current_uow()
    uow.add(key)
    uow.session.flush()  # the key's id, for its audit event
    uow.audit("api_key.create", "api_key", key.id, ["name", "scopes", "source"])
    return key, f"{KEY_PREFIX}_{lookup}_{secret}"


def find_api_key(presented: str) -> ApiKey | None:
    """The active key matching a presented key text, or None (constant-time comparison)."""
    prefix, _sep, rest = (presented or "").partition("_")
    lookup, _sep, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not lookup or not secret:
        return None
    key = db.session.scalar(sa.select(ApiKey).where(ApiKey.lookup == lookup))
    if key is None or not key.active or not hmac.compare_digest(key.secret_hash, _hash(secret)):
        return None
    return key


def revoke(key: ApiKey, now: datetime | None = None) -> None:
    """Revoke a key at once, in the caller's unit of work (a revoked key stays revoked)."""
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        current_uow().audit("api_key.revoke", "api_key", key.id, ["revoked_at"])
