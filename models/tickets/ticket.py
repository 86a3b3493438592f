"""Tickets: the status workflow, SLA clocks, queues, the message thread and public tracking codes.

Every change here runs inside the caller's unit of work (``current_uow()``): it records the
ticket's history with the unit of work's actor, writes its own audit event, and raises
``TicketResolved`` whenever a ticket is resolved, whichever way it got there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import BilingualName, Model, UTCDateTime, db, one_of, stamp_after_insert, utcnow
from models.crypto import EncryptedText, blind_index
from models.events import TicketResolved
from models.tickets.attachments import MAX_FILES_PER_MESSAGE, CheckedFile, TicketAttachment, store_file
from models.tickets.policy import PRIORITIES, due_at, load_calendar, policy_for
from models.tickets.sla import Calendar, business_time_between
from models.tickets.tracking import new_tracking_code, tracking_lookup_key
from models.uow import current_uow
from models.user import RIGHTS, StaffUser, role_has

STATUSES = ("new", "acknowledged", "investigating", "waiting_on_customer", "resolved", "closed")
OPEN_STATUSES = ("new", "acknowledged", "investigating", "waiting_on_customer")
STATUS_LABELS = {
    "new": _l("New"),
    "acknowledged": _l("Acknowledged"),
    "investigating": _l("Investigating"),
    "waiting_on_customer": _l("Waiting on customer"),
    "resolved": _l("Resolved"),
    "closed": _l("Closed"),
}
# Every legal move; anything else is refused. Resolved and closed tickets can be reopened.
TRANSITIONS = {
    "new": {"acknowledged", "investigating", "waiting_on_customer", "resolved", "closed"},
    "acknowledged": {"investigating", "waiting_on_customer", "resolved", "closed"},
    "investigating": {"waiting_on_customer", "resolved", "closed"},
    "waiting_on_customer": {"investigating", "resolved", "closed"},
    "resolved": {"closed", "investigating"},
    "closed": {"investigating"},
}
CHANNELS = ("phone", "email", "web", "chat", "social", "store")
CHANNEL_LABELS = {
    "phone": _l("Phone"),
    "email": _l("Email"),
    "web": _l("Web form"),
    "chat": _l("Chat"),
    "social": _l("Social media"),
    "store": _l("In store"),
}
MESSAGE_KINDS = ("inbound", "outbound", "note")
MESSAGE_KIND_LABELS = {
    "inbound": _l("From the customer"),
    "outbound": _l("Reply to the customer"),
    "note": _l("Internal note"),
}
DUE_SOON = timedelta(hours=2)
SLA_STATE_LABELS = {
    "paused": _l("Paused"),
    "overdue": _l("Overdue"),
    "breached": _l("Breached"),
    "due_soon": _l("Due soon"),
}


class TicketError(ValueError):
    """A ticket operation that the rules refuse; the message says why."""


class TicketCategory(BilingualName, Model):
    """A kind of ticket (complaint, inquiry, …), named in both languages; admins edit the list."""

    __tablename__ = "ticket_category"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name_en: Mapped[str] = mapped_column(sa.String(100))
    name_zh: Mapped[str] = mapped_column(sa.String(100))
    active: Mapped[bool] = mapped_column(default=True)
    position: Mapped[int] = mapped_column(default=0)


class Ticket(Model):
    """A complaint or message that must reach an owner, a first answer and a resolution in time."""

    __tablename__ = "ticket"
    __table_args__ = (
        one_of("status", STATUSES, "status"),
        one_of("priority", PRIORITIES, "priority"),
        one_of("channel", CHANNELS, "channel"),
        sa.CheckConstraint("csat_score BETWEEN 1 AND 5", name="csat_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(sa.String(20), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("customer.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(sa.String(16))
    category_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ticket_category.id"))
    priority: Mapped[str] = mapped_column(sa.String(16), default="normal")
    subject: Mapped[str] = mapped_column(sa.String(200))
    # What a web ticket is about, in the customer's words (its message's first sentence): sealed
    # like the message, and shown only to staff who may see personal data (the subject stays the
    # standard one, which lists, search and analysts use).
    summary: Mapped[str | None] = mapped_column(EncryptedText("ticket.summary"))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(24), default="new", index=True)
    # Contact details given on the public form (personal data: sealed like a customer's).
    contact_name: Mapped[str | None] = mapped_column(EncryptedText("ticket.contact_name"))
    contact_email: Mapped[str | None] = mapped_column(EncryptedText("ticket.contact_email"))
    contact_phone: Mapped[str | None] = mapped_column(EncryptedText("ticket.contact_phone"))
    # The customer's tracking code, sealed; found by its keyed hash.
    tracking_code: Mapped[str | None] = mapped_column(EncryptedText("ticket.tracking_code"))
    tracking_bidx: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    first_response_due: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolution_due: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The SLA clock stops while the team waits on the customer.
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_seconds: Mapped[int] = mapped_column(default=0)
    first_response_breached: Mapped[bool] = mapped_column(default=False)
    resolution_breached: Mapped[bool] = mapped_column(default=False)
    # The customer's satisfaction (1–5) from the survey sent when the ticket was resolved.
    csat_score: Mapped[int | None]
    csat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer = relationship("Customer", lazy="joined")
    category = relationship(TicketCategory, lazy="joined")
    owner = relationship("StaffUser", lazy="joined")
    messages: Mapped[list[TicketMessage]] = relationship(
        back_populates="ticket", order_by="TicketMessage.id", cascade="all, delete-orphan"
    )
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id", cascade="all, delete-orphan"
    )

    def __str__(self) -> str:
        return self.reference or f"#{self.id}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def paused(self) -> timedelta:
        return timedelta(seconds=self.paused_seconds or 0)

    def sla_state(self, now: datetime) -> str | None:
        """Where the ticket stands against its SLA: paused, overdue, breached, due_soon or None."""
        if self.paused_since is not None and self.is_open:
            return "paused"
        if self.overdue(now):
            return "overdue"
        if self.first_response_breached or self.resolution_breached:
            return "breached"
        if self.due_soon(now):
            return "due_soon"
        return None

    def due_soon(self, now: datetime, within: timedelta = DUE_SOON) -> bool:
        """Whether a target falls due within `within` (and none has passed yet)."""
        if not self.is_open or self.paused_since is not None or self.overdue(now):
            return False
        horizon = now + within
        soon_response = self.first_responded_at is None and _before(self.first_response_due, horizon)
        return soon_response or _before(self.resolution_due, horizon)

    def overdue(self, now: datetime) -> bool:
        """Whether an unmet target's due time has passed on a running clock."""
        if not self.is_open or self.paused_since is not None:
            return False
        late_response = self.first_responded_at is None and _before(self.first_response_due, now)
        return late_response or _before(self.resolution_due, now)


def _before(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment < now


class TicketMessage(Model):
    """One message in a ticket's thread: from the customer, to the customer, or an internal note."""

    __tablename__ = "ticket_message"
    __table_args__ = (one_of("kind", MESSAGE_KINDS, "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    body: Mapped[str] = mapped_column(EncryptedText("ticket_message.body"))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    author = relationship("StaffUser", lazy="joined")
    # Loaded for the whole thread in one query when the ticket page reads it.
    attachments: Mapped[list[TicketAttachment]] = relationship(
        order_by=TicketAttachment.id, cascade="all, delete-orphan", lazy="selectin"
    )

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"

    @property
    def is_public(self) -> bool:
        """Whether the customer may read it on the tracking page."""
        return self.kind in ("inbound", "outbound")


class TicketEvent(Model):
    """The ticket's history: every status change, assignment, priority change and breach."""

    __tablename__ = "ticket_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    kind: Mapped[str] = mapped_column(sa.String(24))
    from_value: Mapped[str | None] = mapped_column(sa.String(64))
    to_value: Mapped[str | None] = mapped_column(sa.String(64))

    ticket: Mapped[Ticket] = relationship(back_populates="events")
    actor = relationship("StaffUser", lazy="joined")

    def __str__(self) -> str:
        return f"{self.kind}: {self.from_value} → {self.to_value}"


@sa.event.listens_for(Ticket, "after_insert")
def _assign_reference(_mapper, connection, target: Ticket) -> None:
    """A human reference from the year and the id: T-2026-000123."""
    stamp_after_insert(connection, target, "reference", f"T-{target.created_at.year}-{target.id:06d}")


def _log(ticket: Ticket, kind: str, before: str | None, after: str | None, now: datetime) -> None:
    """A line of the ticket's history, by whoever the unit of work acts for."""
    actor_id = current_uow().actor.staff_id
    ticket.events.append(TicketEvent(kind=kind, from_value=before, to_value=after, actor_id=actor_id, at=now))


def schedule(ticket: Ticket, calendar: Calendar) -> None:
    """Set the due times from the ticket's priority policy, its start and its paused time."""
    policy = policy_for(ticket.priority)
    ticket.first_response_due = due_at(
        ticket.created_at, policy.first_response_minutes, ticket.paused, calendar
    )
    ticket.resolution_due = due_at(ticket.created_at, policy.resolution_minutes, ticket.paused, calendar)


# Who may own tickets -------------------------------------------------------------------


def owner_clause() -> sa.ColumnElement[bool]:
    """Staff who may own tickets: active, in a role holding the ticket-work right."""
    roles = [str(role) for role in RIGHTS["ticket.work"]]
    return sa.and_(StaffUser.active.is_(True), StaffUser.role.in_(roles))


def ticket_owners() -> list[StaffUser]:
    """Everyone who may own tickets, by email (the owner pickers list them)."""
    return list(db.session.scalars(sa.select(StaffUser).where(owner_clause()).order_by(StaffUser.email)))


def may_own_tickets(staff: StaffUser) -> bool:
    """Whether this member of staff may own tickets (and so take one: "assign to me")."""
    return bool(staff.active) and role_has(staff.role, "ticket.work")


def _check_owner(owner_id: int | None) -> None:
    if owner_id is None:
        return
    if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.id == owner_id, owner_clause())) is None:
        raise TicketError(str(_l("This member of staff cannot own tickets.")))


# Opening, moving, answering --------------------------------------------------------------


@dataclass
class NewTicket:
    """What is needed to open a ticket."""

    subject: str
    channel: str
    summary: str | None = None
    priority: str = "normal"
    category: TicketCategory | None = None
    customer_id: int | None = None
    owner_id: int | None = None
    first_message: str | None = None
    first_message_kind: str = "inbound"  # "note" for a ticket the system opens (a follow-up)
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None


def open_ticket(spec: NewTicket, now: datetime | None = None) -> tuple[Ticket, str]:
    """Open a ticket with its SLA clock and tracking code (audited); returns it and the code."""
    uow = current_uow()
    now = now or utcnow()
    if spec.channel not in CHANNELS:
        raise TicketError(f"unknown channel {spec.channel!r}")
    if spec.priority not in PRIORITIES:
        raise TicketError(f"unknown priority {spec.priority!r}")
    _check_owner(spec.owner_id)
    code = new_tracking_code()
    ticket = Ticket(
        subject=spec.subject.strip()[:200],
        summary=spec.summary,
        channel=spec.channel,
        priority=spec.priority,
        category=spec.category,
        customer_id=spec.customer_id,
        owner_id=spec.owner_id,
        contact_name=spec.contact_name,
        contact_email=spec.contact_email,
        contact_phone=spec.contact_phone,
        status="new",
        created_at=now,
        updated_at=now,
        tracking_code=code,
        tracking_bidx=blind_index("tracking", tracking_lookup_key(code)),
    )
    schedule(ticket, load_calendar())
    _log(ticket, "status", None, "new", now)
    if spec.first_message_kind not in MESSAGE_KINDS:
        raise TicketError(f"unknown message kind {spec.first_message_kind!r}")
    if spec.first_message:
        ticket.messages = [
            TicketMessage(kind=spec.first_message_kind, body=spec.first_message, created_at=now)
        ]
    uow.add(ticket)
    uow.session.flush()  # the audit event names the ticket by its id
    uow.audit("ticket.create", "ticket", ticket.id, ["subject", "channel", "priority"])
    return ticket, code


def find_by_tracking_code(code: str) -> Ticket | None:
    """The ticket a tracking code belongs to, or None."""
    key = tracking_lookup_key(code)
    if key is None:
        return None
    return db.session.scalar(sa.select(Ticket).where(Ticket.tracking_bidx == blind_index("tracking", key)))


def move_ticket(ticket: Ticket, to_status: str, now: datetime | None = None, *, detail: str = "") -> None:
    """Move a ticket along the workflow (audited), or raise TicketError and change nothing.

    A ticket is resolved when its resolution is first stamped: moved to "resolved", or closed
    while still open. Either way the unit of work raises ``TicketResolved``, so that every
    resolution gets the same reactions (the satisfaction survey) whichever door asked.
    """
    uow = current_uow()
    now = now or utcnow()
    before = ticket.status
    if to_status not in TRANSITIONS.get(before, ()):
        raise TicketError(
            str(
                _l(
                    "A ticket cannot go from “%(a)s” to “%(b)s”.",
                    a=STATUS_LABELS.get(before, before),
                    b=STATUS_LABELS.get(to_status, to_status),
                )
            )
        )
    resolving = ticket.resolved_at is None and to_status in ("resolved", "closed")
    if before == "waiting_on_customer":
        _resume_clock(ticket, load_calendar(), now)
    if to_status == "waiting_on_customer":
        ticket.paused_since = now
    if to_status == "resolved":
        ticket.resolved_at = now
    if to_status == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    if to_status == "investigating" and before in ("resolved", "closed"):
        ticket.resolved_at = ticket.closed_at = None  # reopened: the resolution clock runs again
    ticket.status = to_status
    ticket.updated_at = now
    _log(ticket, "status", before, to_status, now)
    uow.audit("ticket.status", "ticket", ticket.id, ["status"], detail=detail or to_status)
    if resolving:
        uow.emit(TicketResolved(ticket_id=ticket.id, customer_id=ticket.customer_id, at=now))


def _resume_clock(ticket: Ticket, calendar: Calendar, now: datetime) -> None:
    """End a pause: add its business time to the ticket and push the due times out."""
    if ticket.paused_since is not None:
        paused = business_time_between(ticket.paused_since, now, calendar)
        ticket.paused_seconds = int((ticket.paused + paused).total_seconds())
        ticket.paused_since = None
        schedule(ticket, calendar)


def add_message(
    ticket: Ticket,
    kind: str,
    body: str,
    now: datetime | None = None,
    files: list[CheckedFile] | tuple[CheckedFile, ...] = (),
) -> TicketMessage:
    """Add to the thread (audited), with any files checked by the caller (see attachments).

    The first reply to the customer stamps the first response.
    """
    uow = current_uow()
    now = now or utcnow()
    body = (body or "").strip()
    if kind not in MESSAGE_KINDS:
        raise TicketError(f"unknown message kind {kind!r}")
    if not body:
        raise TicketError(str(_l("A message cannot be empty.")))
    if len(files) > MAX_FILES_PER_MESSAGE:
        raise TicketError(str(_l("Attach at most %(n)d files to a message.", n=MAX_FILES_PER_MESSAGE)))
    message = TicketMessage(kind=kind, body=body, author_id=uow.actor.staff_id, created_at=now)
    message.attachments = [store_file(uow.session, checked) for checked in files]
    ticket.messages.append(message)
    if kind == "outbound" and ticket.first_responded_at is None:
        ticket.first_responded_at = now
        if ticket.first_response_due and now > ticket.first_response_due:
            ticket.first_response_breached = True
    ticket.updated_at = now
    uow.audit("ticket.message", "ticket", ticket.id, ["body"], detail=kind)
    if files:
        uow.audit("ticket.attachment", "ticket", ticket.id, ["attachments"], detail=str(len(files)))
    return message


FINISHING = ("resolved", "closed")


def finish_ticket(
    ticket: Ticket, to_status: str, reply: str | None = None, now: datetime | None = None
) -> None:
    """Resolve or close a ticket, with an optional last reply to the customer, all or nothing.

    The move is checked before the reply is written, so a refused move adds no reply; both run
    in the caller's unit of work, so a failure after the reply leaves neither.
    """
    now = now or utcnow()
    if to_status not in FINISHING or to_status not in TRANSITIONS.get(ticket.status, ()):
        raise TicketError(
            str(
                _l(
                    "A ticket cannot go from “%(a)s” to “%(b)s”.",
                    a=STATUS_LABELS.get(ticket.status, ticket.status),
                    b=STATUS_LABELS.get(to_status, to_status),
                )
            )
        )
    if reply and reply.strip():
        add_message(ticket, "outbound", reply, now)
    move_ticket(ticket, to_status, now)


def take_ticket(ticket: Ticket, staff: StaffUser, now: datetime | None = None) -> bool:
    """Assign an open ticket to oneself; a new one is acknowledged too. False if it is not open."""
    if not ticket.is_open:
        return False
    if not may_own_tickets(staff):
        raise TicketError(str(_l("This member of staff cannot own tickets.")))
    now = now or utcnow()
    assign(ticket, staff, now, detail="taken")
    if ticket.status == "new":
        move_ticket(ticket, "acknowledged", now, detail="taken")
    return True


def take_tickets(tickets: list[Ticket], staff: StaffUser, now: datetime | None = None) -> tuple[int, int]:
    """Assign the open ones of these tickets to oneself; returns (taken, skipped)."""
    taken = sum(take_ticket(ticket, staff, now) for ticket in tickets)
    return taken, len(tickets) - taken


# Owner, priority, category -------------------------------------------------------------------


def _set_owner(ticket: Ticket, owner: StaffUser | None, now: datetime) -> bool:
    new_id = owner.id if owner is not None else None
    if ticket.owner_id == new_id:
        return False
    _check_owner(new_id)
    before = str(ticket.owner) if ticket.owner else None
    ticket.owner_id = new_id
    ticket.owner = owner
    _log(ticket, "owner", before, str(owner) if owner else None, now)
    return True


def _set_priority(ticket: Ticket, priority: str, now: datetime) -> bool:
    if priority not in PRIORITIES:
        raise TicketError(f"unknown priority {priority!r}")
    if ticket.priority == priority:
        return False
    _log(ticket, "priority", ticket.priority, priority, now)
    ticket.priority = priority
    schedule(ticket, load_calendar())  # the due times follow the new priority's policy
    return True


def _set_category(ticket: Ticket, category: TicketCategory | None, now: datetime) -> bool:
    if ticket.category_id == (category.id if category is not None else None):
        return False
    before = ticket.category.code if ticket.category else None
    _log(ticket, "category", before, category.code if category else None, now)
    ticket.category = category
    return True


def assign(ticket: Ticket, owner: StaffUser | None, now: datetime | None = None, *, detail: str = "") -> None:
    """Give the ticket an owner (or none); recorded in its history and audited."""
    if _set_owner(ticket, owner, now or utcnow()):
        current_uow().audit("ticket.edit", "ticket", ticket.id, ["owner"], detail=detail)


def change_priority(ticket: Ticket, priority: str, now: datetime | None = None, *, detail: str = "") -> None:
    """Change the priority; the due times follow the new priority's policy. Audited."""
    if _set_priority(ticket, priority, now or utcnow()):
        current_uow().audit("ticket.edit", "ticket", ticket.id, ["priority"], detail=detail)


def set_category(ticket: Ticket, category: TicketCategory | None, now: datetime | None = None) -> None:
    """Recategorise a ticket; recorded in its history and audited."""
    if _set_category(ticket, category, now or utcnow()):
        current_uow().audit("ticket.edit", "ticket", ticket.id, ["category"])


def edit_ticket(
    ticket: Ticket,
    owner: StaffUser | None,
    priority: str,
    category: TicketCategory | None,
    now: datetime | None = None,
) -> list[str]:
    """Set owner, priority and category at once; one audit event names what changed."""
    now = now or utcnow()
    changed = [
        name
        for name, did in (
            ("owner", _set_owner(ticket, owner, now)),
            ("priority", _set_priority(ticket, priority, now)),
            ("category", _set_category(ticket, category, now)),
        )
        if did
    ]
    if changed:
        current_uow().audit("ticket.edit", "ticket", ticket.id, changed)
    return changed


def close_tickets(tickets: list[Ticket], now: datetime | None = None) -> tuple[list[Ticket], int]:
    """Close every ticket that may be closed; returns the tickets closed and how many were skipped."""
    closed = [t for t in tickets if "closed" in TRANSITIONS.get(t.status, ())]
    for ticket in closed:
        move_ticket(ticket, "closed", now, detail="closed (bulk)")
    return closed, len(tickets) - len(closed)


# Queues ------------------------------------------------------------------------------------


def open_clause() -> sa.ColumnElement[bool]:
    """Tickets still being worked (not resolved or closed)."""
    return Ticket.status.in_(OPEN_STATUSES)


def mine_clause(staff_id: int) -> sa.ColumnElement[bool]:
    """The open tickets a member of staff owns: their queue."""
    return sa.and_(Ticket.owner_id == staff_id, open_clause())


def unassigned_clause() -> sa.ColumnElement[bool]:
    """Open tickets nobody owns yet."""
    return sa.and_(Ticket.owner_id.is_(None), open_clause())


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Open, running tickets whose first response or resolution is past due."""
    return sa.and_(
        open_clause(),
        Ticket.paused_since.is_(None),
        sa.or_(
            sa.and_(Ticket.first_responded_at.is_(None), Ticket.first_response_due < now),
            Ticket.resolution_due < now,
        ),
    )


def due_soon_clause(now: datetime, within: timedelta = DUE_SOON) -> sa.ColumnElement[bool]:
    """Open, running tickets with a target falling due in the next `within`."""
    horizon = now + within
    return sa.and_(
        open_clause(),
        Ticket.paused_since.is_(None),
        sa.not_(overdue_clause(now)),
        sa.or_(
            sa.and_(Ticket.first_responded_at.is_(None), Ticket.first_response_due <= horizon),
            Ticket.resolution_due <= horizon,
        ),
    )


def breached_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Tickets that missed a target, or are missing one right now."""
    return sa.or_(
        Ticket.first_response_breached.is_(True),
        Ticket.resolution_breached.is_(True),
        overdue_clause(now),
    )


# Escalation (a scheduled job) ------------------------------------------------------------------


def escalate_breaches(now: datetime | None = None) -> dict[str, str]:
    """Flag newly breached tickets and raise their priority by policy, each audited.

    Runs in the caller's unit of work; returns the escalated tickets' references and their
    priority now. Safe to run twice at once: on PostgreSQL a run skips the tickets another
    run has locked, on SQLite runs queue behind the write lock; either way the second finds
    the flags already set.
    """
    uow = current_uow()
    now = now or utcnow()
    query = (
        sa.select(Ticket)
        .where(overdue_clause(now))
        .order_by(Ticket.id)
        .with_for_update(skip_locked=True, of=Ticket)
    )
    escalated: dict[str, str] = {}
    for ticket in db.session.scalars(query):
        late_response = ticket.first_responded_at is None and _before(ticket.first_response_due, now)
        late_resolution = _before(ticket.resolution_due, now)
        news = (late_response and not ticket.first_response_breached) or (
            late_resolution and not ticket.resolution_breached
        )
        if not news:
            continue
        ticket.first_response_breached |= late_response
        ticket.resolution_breached |= late_resolution
        _log(ticket, "breach", None, "resolution" if late_resolution else "first_response", now)
        raise_to = policy_for(ticket.priority).escalate_to
        if raise_to and PRIORITIES.index(raise_to) > PRIORITIES.index(ticket.priority):
            _set_priority(ticket, raise_to, now)
        uow.audit("ticket.escalate", "ticket", ticket.id, ["priority", "breach"])
        escalated[str(ticket)] = ticket.priority
    return escalated


# Look-ups ----------------------------------------------------------------------------------------


def category_by_code(code: str) -> TicketCategory | None:
    """The ticket category with this code, or None."""
    return db.session.scalar(sa.select(TicketCategory).where(TicketCategory.code == code))


def active_categories() -> list[TicketCategory]:
    """The categories offered for new tickets and recategorising, in their order."""
    query = sa.select(TicketCategory).where(TicketCategory.active.is_(True)).order_by(TicketCategory.position)
    return list(db.session.scalars(query))


def tickets_by_ids(ids: list[str] | list[int]) -> list[Ticket]:
    """The tickets with these ids (unknown ids are ignored)."""
    numbers = [int(i) for i in ids if str(i).isdigit()]
    return list(db.session.scalars(sa.select(Ticket).where(Ticket.id.in_(numbers)).order_by(Ticket.id)))
