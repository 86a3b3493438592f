"""Feedback from the public form: it opens a ticket and finds the customer it came from."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext

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
# Subjects the panel shows in the reader's language (web tickets opened before subjects were
# taken from the message, and those whose message gives none).
STANDARD_SUBJECTS = frozenset(subject for _code, _priority, subject in FEEDBACK_KINDS.values())
# How wide a subject taken from a message may be, in columns: a Chinese character takes two.
SUBJECT_WIDTH = 60
# A sentence ends at . ! ? (then a space) or at a full-width 。！？ (no space follows in Chinese).
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|[。！？]")


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def shown_subject(subject: str, summary: str | None, with_pii: bool) -> str:
    """A ticket's subject as a reader sees it: a web ticket's summary (the customer's words) only
    for staff who may see personal data; a standard subject in the reader's language."""
    if with_pii and summary:
        return summary
    return gettext(subject) if subject in STANDARD_SUBJECTS else subject


def subject_from_message(message: str | None, fallback: str, width: int = SUBJECT_WIDTH) -> str:
    """A subject from what the customer wrote: the first sentence if it is short enough, else
    the start cut at a word boundary (Chinese at a character), whitespace collapsed; the
    fallback when the message is empty."""
    text = " ".join((message or "").split())
    if not text:
        return fallback
    end = _SENTENCE_END.search(text)
    if end:
        text = text[: end.end()].rstrip(".。")
    if sum(map(_width, text)) <= width:
        return text
    used, cut = 0, 0
    for cut, ch in enumerate(text):  # noqa: B007 (cut is read after the loop)
        used += _width(ch)
        if used > width - 1:  # room for the ellipsis
            break
    head = text[:cut]
    if _width(text[cut]) == 1 and not text[cut].isspace() and " " in head:
        head = head[: head.rindex(" ")]  # a Latin word is not cut in two
    return head.rstrip(" ,;:，；：、") + "…"


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
        summary=subject_from_message(message, "") or None,
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
