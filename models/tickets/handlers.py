"""How tickets react to other aggregates' events: a detractor's follow-up, a customer's rating.

Handlers run in the unit of work that raised the event, so a follow-up ticket or a score is
stored together with the survey answer that caused it, or not at all.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _

from models.events import DetractorAnswered, FollowUpTicketOpened, TicketRated, handles
from models.tickets.ticket import NewTicket, Ticket, category_by_code, open_ticket
from models.uow import UnitOfWork


@handles(DetractorAnswered)
def open_follow_up_ticket(uow: UnitOfWork, event: DetractorAnswered) -> None:
    """A low score opens a high-priority complaint for the customer, with the scores in a note."""
    title, scores = event.survey_title, event.scores
    with force_locale(event.language):  # written for the team that reads this survey
        subject = _("Survey follow-up: %(title)s (%(scores)s)", title=title, scores=scores)
        note = _("Low score in survey “%(title)s”: %(scores)s.", title=title, scores=scores)
    # The note goes in with the ticket: one insert each, no read of an empty thread.
    ticket, _code = open_ticket(
        NewTicket(
            subject=subject[:200],
            channel="web",
            priority="high",
            category=category_by_code("complaint"),
            customer_id=event.customer_id,
            first_message="\n\n".join(part for part in (note, event.comment.strip()) if part),
            first_message_kind="note",
        ),
        now=event.at,
    )
    uow.emit(FollowUpTicketOpened(response_id=event.response_id, ticket_id=ticket.id))


@handles(TicketRated)
def store_ticket_rating(uow: UnitOfWork, event: TicketRated) -> None:
    """The customer's satisfaction score is kept on the ticket (one statement: the answer path is hot)."""
    tickets = Ticket.__table__  # Core, not the ORM's bulk update: cheaper, and nothing is loaded
    uow.session.execute(
        sa.update(tickets)
        .where(tickets.c.id == event.ticket_id)
        .values(csat_score=event.score, csat_at=event.at)
    )
