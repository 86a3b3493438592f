"""Which stored code is shown by which label: one registry for every staff screen.

Each enumeration keeps its labels next to itself (STATUS_LABELS in models/tickets/ticket.py, ...);
this module only says which column holds codes of which enumeration, so that the staff screens
show "已完成" where the row holds `completed` without each view saying so.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from models.customer import CUSTOMER_LANGUAGES, GENDER_LABELS, SOURCE_LABELS, Customer
from models.jobs import STATUS_LABELS as RUN_STATUS_LABELS
from models.jobs import JobRun, ScheduledJob
from models.loyalty.ledger import ENTRY_LABELS, REASON_LABELS, PointsEntry
from models.loyalty.purchases import (
    PURCHASE_CHANNELS,
    PURCHASE_SOURCE_LABELS,
    PURCHASE_STATUS_LABELS,
    Purchase,
)
from models.loyalty.rewards import REDEMPTION_LABELS, Redemption
from models.surveys.builder import QUESTION_KIND_LABELS, Question, Survey
from models.surveys.invitations import INVITATION_LABELS, Invitation
from models.tickets.canned import CannedReply
from models.tickets.policy import PRIORITY_LABELS, SlaPolicy
from models.tickets.ticket import CHANNEL_LABELS, MESSAGE_KIND_LABELS, STATUS_LABELS, Ticket, TicketMessage
from models.user import LANGUAGES, ROLE_LABELS, StaffUser

Labels = Mapping[str, t.Any]

# (model, column) → the labels of the codes that column holds.
COLUMN_LABELS: dict[tuple[type, str], Labels] = {
    (Customer, "gender"): GENDER_LABELS,
    (Customer, "source_channel"): SOURCE_LABELS,
    (Customer, "language"): CUSTOMER_LANGUAGES,
    (Ticket, "status"): STATUS_LABELS,
    (Ticket, "channel"): CHANNEL_LABELS,
    (Ticket, "priority"): PRIORITY_LABELS,
    (TicketMessage, "kind"): MESSAGE_KIND_LABELS,
    (CannedReply, "language"): CUSTOMER_LANGUAGES,
    (SlaPolicy, "priority"): PRIORITY_LABELS,
    (Purchase, "status"): PURCHASE_STATUS_LABELS,
    (Purchase, "channel"): PURCHASE_CHANNELS,
    (Purchase, "source"): PURCHASE_SOURCE_LABELS,
    (PointsEntry, "kind"): ENTRY_LABELS,
    (PointsEntry, "reason"): REASON_LABELS,
    (Redemption, "status"): REDEMPTION_LABELS,
    (Survey, "language"): LANGUAGES,
    (Question, "kind"): QUESTION_KIND_LABELS,
    (Invitation, "status"): INVITATION_LABELS,
    (StaffUser, "role"): ROLE_LABELS,
    (StaffUser, "language"): LANGUAGES,
    (JobRun, "status"): RUN_STATUS_LABELS,
    (ScheduledJob, "last_status"): RUN_STATUS_LABELS,
}


# Columns where only some values are codes (the rest free text, shown as typed): their filters
# keep a text field instead of a menu of the known codes.
PARTLY_CODED: set[tuple[type, str]] = {(Purchase, "source"), (PointsEntry, "reason")}


def closed_enumeration(model: type, column: str) -> bool:
    """Whether every value of the column is one of its labelled codes."""
    return not any(issubclass(model, owner) and column == name for owner, name in PARTLY_CODED)


def labels_of(model: type) -> dict[str, Labels]:
    """The code columns of a model (and of its parents), each with its labels."""
    return {column: labels for (owner, column), labels in COLUMN_LABELS.items() if issubclass(model, owner)}


def label(labels: Labels, code: t.Any) -> t.Any:
    """The label of a code in the reader's language; a code with no label is shown as stored."""
    found = labels.get(code)
    return code if found is None else str(found)
