"""Canned replies: ready answers per language that managers keep and agents insert into a reply.

A reply may name the customer and the ticket with the placeholders {customer_name} and
{ticket_number}; they are filled by plain replacement (never str.format, which would let a
stored template reach into objects), and the text stays plain text: the picker puts it into
a text box, and the thread shows it escaped like any other message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of, utcnow
from models.customer import CUSTOMER_LANGUAGES

CANNED_LANGUAGES = tuple(CUSTOMER_LANGUAGES)
PLACEHOLDERS = ("{customer_name}", "{ticket_number}")


class CannedReply(Model):
    """A ready answer in one language, offered on the reply box while active."""

    __tablename__ = "canned_reply"
    __table_args__ = (one_of("language", CANNED_LANGUAGES, "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    language: Mapped[str] = mapped_column(sa.String(16), index=True)
    body: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __str__(self) -> str:
        return self.title


@dataclass(frozen=True)
class CannedChoice:
    """A canned reply as the picker offers it: its text already filled for one ticket."""

    id: int
    title: str
    language: str
    body: str


def fill_placeholders(body: str, customer_name: str | None, ticket_number: str) -> str:
    """The body with {customer_name} and {ticket_number} replaced; nothing else is interpreted."""
    return body.replace("{customer_name}", customer_name or "").replace("{ticket_number}", ticket_number)


def canned_replies_for(
    language: str | None, customer_name: str | None, ticket_number: str
) -> list[CannedChoice]:
    """Active canned replies, the customer's language first, then the rest; each filled in."""
    first = sa.case((CannedReply.language == (language or ""), 0), else_=1)
    query = (
        sa.select(CannedReply)
        .where(CannedReply.active.is_(True))
        .order_by(first, CannedReply.language, CannedReply.title, CannedReply.id)
    )
    return [
        CannedChoice(
            reply.id, reply.title, reply.language, fill_placeholders(reply.body, customer_name, ticket_number)
        )
        for reply in db.session.scalars(query)
    ]
