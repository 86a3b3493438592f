"""The unit of work: one transaction, its audit events and its domain events, committed once.

Every write in Patron, whoever asks (a staff screen, a public page, the API, a command, a
job), happens inside ``with unit_of_work(actor) as uow:``. The block

- ends any read transaction the request had open and starts the write transaction up
  front (``BEGIN IMMEDIATE`` on SQLite, so concurrent writers queue behind the busy
  timeout instead of failing with "database is locked");
- collects the rows that domain functions add, the audit events they record with
  ``uow.audit(...)`` and the domain events they raise with ``uow.emit(...)``;
- runs the handlers of those events in the same transaction, then commits once; on any
  error nothing of it is kept, neither the change nor its audit event.

Domain functions never commit; they find the open unit of work with ``current_uow()``.
A flush or a write statement outside a unit of work is refused (``WriteOutsideUnitOfWork``),
so a forgotten door fails in its tests instead of in production.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from models import db, utcnow
from models.audit import AuditEvent
from models.events import DomainEvent, dispatch

ActorKind = t.Literal["staff", "api", "system", "anonymous"]
_UOW_KEY = "patron.unit_of_work"


@dataclass(frozen=True)
class Actor:
    """Who asks for a change: a member of staff, an API key, the system, or an anonymous visitor."""

    kind: ActorKind
    label: str
    staff_id: int | None = None
    ip: str | None = None

    @classmethod
    def staff(cls, user: t.Any, ip: str | None = None) -> Actor:
        return cls("staff", str(user.email)[:254], int(user.id), ip)

    @classmethod
    def api_key(cls, key: t.Any, ip: str | None = None) -> Actor:
        return cls("api", f"api:{key.name}"[:254], None, ip)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", label[:254])

    @classmethod
    def anonymous(cls, ip: str | None = None) -> Actor:
        return cls("anonymous", "anonymous", None, ip)

    def __str__(self) -> str:
        return self.label


SYSTEM = Actor.system()


class WriteOutsideUnitOfWork(RuntimeError):
    """A row was about to be written with no unit of work open: a door forgot to open one."""


class WriteBusy(RuntimeError):
    """The database stayed busy past the timeout; nothing of the change was stored."""


@dataclass
class UnitOfWork:
    """The open transaction: its actor, its audit events and the domain events still to handle."""

    session: Session
    actor: Actor
    started_at: t.Any = field(default_factory=utcnow)
    audited: list[AuditEvent] = field(default_factory=list)
    _pending: list[DomainEvent] = field(default_factory=list)
    handled: list[DomainEvent] = field(default_factory=list)
    # What handlers tell the door that opened the unit of work (e.g. a survey link to show once).
    notices: dict[str, t.Any] = field(default_factory=dict)

    def add(self, row: t.Any) -> t.Any:
        """Add a new row to the transaction and return it."""
        self.session.add(row)
        return row

    def audit(
        self,
        action: str,
        object_type: str | None = None,
        object_id: object = None,
        fields: Iterable[str] = (),
        detail: str = "",
    ) -> AuditEvent:
        """Record an audit event of this transaction: fields are named, values never."""
        event = AuditEvent(
            at=utcnow(),
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id)[:64],
            fields=",".join(sorted(set(fields))),
            detail=detail,
            actor_id=self.actor.staff_id,
            actor=self.actor.label,
            ip=self.actor.ip,
        )
        self.session.add(event)
        self.audited.append(event)
        return event

    def emit(self, event: DomainEvent) -> None:
        """Raise a domain event; its handlers run in this transaction before it commits."""
        self._pending.append(event)

    def dispatch_pending(self) -> None:
        """Run the handlers of every raised event, including events that handlers raise."""
        while self._pending:
            event = self._pending.pop(0)
            dispatch(self, event)
            self.handled.append(event)


def current_uow() -> UnitOfWork:
    """The unit of work open on this session; a domain function that writes needs one."""
    uow = db.session().info.get(_UOW_KEY)
    if uow is None:
        raise WriteOutsideUnitOfWork("this change needs a unit of work (with unit_of_work(actor): ...)")
    return uow


def in_unit_of_work() -> bool:
    return db.session().info.get(_UOW_KEY) is not None


def is_busy(exc: BaseException) -> bool:
    """Whether a database error means "busy, try again" rather than a fault."""
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        return "database is locked" in text or "database is busy" in text
    if isinstance(exc, DBAPIError):
        # PostgreSQL: serialization failure, deadlock, lock timeout.
        return getattr(exc.orig, "sqlstate", None) in {"40001", "40P01", "55P03"}
    return False


@contextmanager
def unit_of_work(actor: Actor, *, keep_state: bool = False) -> Iterator[UnitOfWork]:
    """Open the write transaction for `actor`, yield it, handle its events and commit once.

    `keep_state` leaves the committed objects loaded, so that a hot path can answer from
    them without reading them again.
    """
    session = db.session()
    if session.info.get(_UOW_KEY) is not None:
        raise RuntimeError("a unit of work is already open; domain functions join it with current_uow()")
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        raise WriteOutsideUnitOfWork("changes were made before the unit of work began")
    if session.in_transaction():
        session.rollback()  # end the read: on SQLite a read transaction cannot become a writer later
    uow = UnitOfWork(session, actor)
    session.info[_UOW_KEY] = uow
    try:
        try:
            session.connection(execution_options={"sqlite_immediate": True})
            yield uow
            uow.dispatch_pending()
            session.flush()
        finally:
            session.info.pop(_UOW_KEY, None)
        session.expire_on_commit = not keep_state
        try:
            session.commit()
        finally:
            session.expire_on_commit = True
    except BaseException as exc:
        session.rollback()
        if is_busy(exc):
            raise WriteBusy(str(exc)) from exc
        raise


@sa.event.listens_for(Session, "before_flush")
def _writes_need_a_unit_of_work(session: Session, _context, _instances) -> None:
    if session.info.get(_UOW_KEY) is not None:
        return
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        raise WriteOutsideUnitOfWork("rows were written outside a unit of work")


@sa.event.listens_for(Session, "do_orm_execute")
def _statements_need_a_unit_of_work(state) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and state.session.info.get(_UOW_KEY) is None:
        raise WriteOutsideUnitOfWork("a write statement ran outside a unit of work")
