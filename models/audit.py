"""The append-only audit log: who did what to which record, naming fields but never values."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models import Model, UTCDateTime, utcnow


class AuditEvent(Model):
    """One audited action. Rows are never updated or deleted (database triggers refuse it)."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    actor: Mapped[str] = mapped_column(sa.String(254), default="")
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(sa.String(64))
    object_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    fields: Mapped[str] = mapped_column(sa.Text, default="")
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    ip: Mapped[str | None] = mapped_column(sa.String(64))

    def __str__(self) -> str:
        target = f"{self.object_type or ''} {self.object_id or ''}".strip()
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {target}"


@sa.event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context, _instances) -> None:
    """Nothing in the app may change or remove an audit event."""
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent) and (obj in session.deleted or session.is_modified(obj)):
            raise PermissionError("audit events are append-only")
