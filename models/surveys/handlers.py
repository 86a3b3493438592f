"""How surveys react to other aggregates' events, inside the transaction that raised them."""

from __future__ import annotations

from models.events import FollowUpTicketOpened, TicketResolved, handles
from models.surveys.answers import link_follow_up
from models.surveys.invitations import invite_after_resolution
from models.uow import UnitOfWork


@handles(TicketResolved)
def invite_to_resolution_survey(uow: UnitOfWork, event: TicketResolved) -> None:
    """A resolved ticket's customer is invited to say how it went; the link is shown once to staff."""
    token = invite_after_resolution(event.ticket_id, event.customer_id, now=event.at)
    if token is not None:
        uow.notices["survey_link"] = token


@handles(FollowUpTicketOpened)
def record_follow_up_ticket(uow: UnitOfWork, event: FollowUpTicketOpened) -> None:
    """The response that asked for a follow-up points at the ticket it opened."""
    link_follow_up(event.response_id, event.ticket_id)
