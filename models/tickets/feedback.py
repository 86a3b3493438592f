"""Feedback from the public form: it opens a ticket and finds the customer it came from."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import db, utcnow
from models.contact import email_lookup_key, normalise_email, normalise_phone
from models.crypto import blind_index
from models.customer import Customer, default_region
from models.tickets.ticket import NewTicket, Ticket, category_by_code, open_ticket


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it: it is stored, then shown translated."""
    return message


# kind on the form → (ticket category code, priority, subject stored in English)
FEEDBACK_KINDS = {
    "complaint": ("complaint", "normal", N_("Complaint from the web form")),
    "suggestion": ("suggestion", "low", N_("Suggestion from the web form")),
    "praise": ("praise", "low", N_("Praise from the web form")),
}
# Subjects the panel shows in the reader's language.
STANDARD_SUBJECTS = frozenset(subject for _code, _priority, subject in FEEDBACK_KINDS.values())


def match_customer(email: str | None, phone: str | None) -> int | None:
    """The id of the known customer with this exact email or phone (blind-index match)."""
    clauses = []
    if email:
        clauses.append(Customer.email_bidx == blind_index("email", email_lookup_key(email)))
    if phone:
        clauses.append(Customer.phone_bidx == blind_index("phone", normalise_phone(phone, default_region())))
    if not clauses:
        return None
    return db.session.scalar(sa.select(Customer.id).where(sa.or_(*clauses)).order_by(Customer.id).limit(1))


def submit_feedback(
    kind: str,
    message: str,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    now: datetime | None = None,
) -> tuple[Ticket, str]:
    """Open a web ticket for a complaint, suggestion or praise; returns it and its tracking code.

    Runs in the caller's unit of work (the ticket's audit event names the visitor as
    anonymous). Raises InvalidContact for a malformed email or phone (the caller shows it).
    """
    category_code, priority, subject = FEEDBACK_KINDS[kind]
    email = normalise_email(email) if email else None
    phone = normalise_phone(phone, default_region()) if phone else None
    spec = NewTicket(
        subject=subject,
        channel="web",
        priority=priority,
        category=category_by_code(category_code),
        customer_id=match_customer(email, phone),
        first_message=message,
        contact_name=(name or "").strip() or None,
        contact_email=email,
        contact_phone=phone,
    )
    return open_ticket(spec, now=now or utcnow())
