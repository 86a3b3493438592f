"""Domain events and their in-process handlers, run inside the unit of work that raised them.

An aggregate raises an event (``uow.emit(TicketResolved(...))``) instead of reaching into
another aggregate's tables; the other aggregate reacts in a handler registered with
``@handles(TicketResolved)``. Handlers run in the same transaction, before it commits, so
the reaction is stored together with the change or not at all. No broker, no threads.
"""

from __future__ import annotations

import importlib
import typing as t
from dataclasses import dataclass
from datetime import datetime

if t.TYPE_CHECKING:
    from models.uow import UnitOfWork


class DomainEvent:
    """Base of every domain event (plain frozen dataclasses)."""


@dataclass(frozen=True)
class TicketResolved(DomainEvent):
    """A ticket reached "resolved", whoever or whatever moved it there."""

    ticket_id: int
    customer_id: int | None
    at: datetime


@dataclass(frozen=True)
class DetractorAnswered(DomainEvent):
    """A survey answer at or under the survey's follow-up threshold (a low NPS or CSAT).

    It carries what the follow-up ticket needs, so that tickets never read survey tables.
    """

    response_id: int
    survey_id: int
    survey_title: str
    customer_id: int | None
    language: str
    scores: str  # e.g. "NPS 3, CSAT 2", for the ticket's internal note
    comment: str
    at: datetime


@dataclass(frozen=True)
class FollowUpTicketOpened(DomainEvent):
    """The follow-up ticket of a detractor's answer exists; the survey side links it."""

    response_id: int
    ticket_id: int


@dataclass(frozen=True)
class TicketRated(DomainEvent):
    """A customer rated how their ticket was handled (the CSAT survey sent on resolution)."""

    ticket_id: int
    score: int
    at: datetime


Handler = t.Callable[["UnitOfWork", t.Any], None]
_handlers: dict[type[DomainEvent], list[Handler]] = {}

# The modules whose handlers react to other aggregates' events; imported once, on first dispatch.
HANDLER_MODULES = ("models.surveys.handlers", "models.tickets.handlers")
_loaded = False


def handles(event_type: type[DomainEvent]) -> t.Callable[[Handler], Handler]:
    """Register a function as a handler of one kind of event."""

    def register(handler: Handler) -> Handler:
        if handler not in _handlers.setdefault(event_type, []):
            _handlers[event_type].append(handler)
        return handler

    return register


def load_handlers() -> None:
    """Import the handler modules, so that their ``@handles`` registrations exist."""
    global _loaded
    if not _loaded:
        for name in HANDLER_MODULES:
            importlib.import_module(name)
        _loaded = True


def dispatch(uow: UnitOfWork, event: DomainEvent) -> None:
    """Run every handler of the event, in registration order, in the event's transaction."""
    load_handlers()
    for handler in _handlers.get(type(event), []):
        handler(uow, event)
