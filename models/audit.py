"""The append-only audit log: who did what to which record, naming fields but never values."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, Session, mapped_column

from models import Model, UTCDateTime, utcnow

# What the audit log names a record type by (object_type; also the first part of an action).
RECORD_LABELS = {
    "api_key": _l("API key"),
    "audit_event": _l("Audit log"),
    "backup": _l("Backup"),
    "business_calendar": _l("Business hours"),
    "canned_reply": _l("Canned reply"),
    "customer": _l("Customer"),
    "earning_rule": _l("Earning rule"),
    "holiday": _l("Holiday"),
    "key": _l("Encryption key"),
    "login": _l("Sign-in"),
    "password": _l("Password"),
    "password_reset": _l("Password reset"),
    "points": _l("Points"),
    "points_entry": _l("Points entry"),
    "promotion": _l("Promotion"),
    "purchase": _l("Purchase"),
    "redemption": _l("Redemption"),
    "sign_in": _l("Sign-in"),
    "reward": _l("Reward"),
    "sla_policy": _l("SLA policy"),
    "staff": _l("Staff member"),
    "staff_session": _l("Staff session"),
    "staff_user": _l("Staff member"),
    "survey": _l("Survey"),
    "survey_invitation": _l("Survey invitation"),
    "ticket": _l("Ticket"),
    "ticket_category": _l("Ticket category"),
    "tier": _l("Tier"),
    "trusted_device": _l("Trusted device"),
    "two_factor": _l("Two-factor sign-in"),
}
# What was done (the last part of an action).
VERB_LABELS = {
    "add": _l("added"),
    "adjust": _l("adjusted"),
    "attachment": _l("attachment added"),
    "attachment_view": _l("attachment opened"),
    "cancel": _l("cancelled"),
    "change": _l("changed"),
    "code_failed": _l("wrong code"),
    "create": _l("created"),
    "delete": _l("deleted"),
    "disable": _l("turned off"),
    "edit": _l("edited"),
    "enable": _l("enabled"),
    "end": _l("ended"),
    "escalate": _l("escalated"),
    "expire": _l("expired"),
    "export": _l("exported"),
    "failed": _l("failed"),
    "forget": _l("forgotten"),
    "import": _l("imported"),
    "invite": _l("invited"),
    "list": _l("listed"),
    "lock": _l("locked"),
    "message": _l("message added"),
    "recompute": _l("recomputed"),
    "recovery_code_used": _l("recovery code used"),
    "recovery_codes": _l("new recovery codes"),
    "refund": _l("refunded"),
    "rehash": _l("rehashed"),
    "request": _l("requested"),
    "reset": _l("reset"),
    "remove": _l("removed"),
    "restore": _l("restored"),
    "results": _l("results viewed"),
    "retire": _l("retired"),
    "revoke": _l("revoked"),
    "rotate": _l("rotated"),
    "search": _l("searched"),
    "search_refused": _l("search refused"),
    "sent": _l("sent"),
    "status": _l("status changed"),
    "unlock": _l("unlocked"),
    "use": _l("used"),
    "view": _l("viewed"),
}
# Actions of one word.
ACTION_LABELS = {"login": _l("Signed in to the panel"), "logout": _l("Signed out of the panel")}


def action_label(action: str) -> str:
    """An audit action (`customer.view`) as a person reads it, in the reader's language."""
    if action in ACTION_LABELS:
        return str(ACTION_LABELS[action])
    record, _dot, verb = action.rpartition(".")
    if record in RECORD_LABELS and verb in VERB_LABELS:
        return _("%(record)s: %(verb)s", record=RECORD_LABELS[record], verb=VERB_LABELS[verb])
    return action


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
