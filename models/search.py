"""Exact look-ups by identifier for the staff's one search box: member numbers, ticket numbers,
tracking codes and coupon codes. Nothing here is personal data; look-ups by email, phone or name
go through models.customer.contact_search, which the door audits and limits."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import db
from models.customer import Customer
from models.loyalty.rewards import COUPON_ALPHABET, Redemption
from models.tickets.ticket import Ticket, find_by_tracking_code

# T-2026-000123, as the ticket's reference is made (models.tickets.ticket._assign_reference); typed
# with or without the T and the dashes, in any case.
_TICKET_NUMBER = re.compile(r"T?-?(\d{4})-?(\d{1,9})")
_COUPON_LENGTH = 16
MAX_HITS = 50  # per kind: a search box is no report


def ticket_reference(term: str) -> str | None:
    """A typed ticket number in the form it is stored in (T-2026-000123); None if it is none."""
    match = _TICKET_NUMBER.fullmatch("".join(term.upper().split()))
    if match is None:
        return None
    return f"T-{match.group(1)}-{int(match.group(2)):06d}"


def coupon_key(term: str) -> str | None:
    """A typed coupon code as issued (ABCD-EFGH-JKLM-NPQR): case, spaces and dashes do not matter."""
    key = "".join(ch for ch in term.upper() if ch not in " -")
    if len(key) != _COUPON_LENGTH or not set(key) <= set(COUPON_ALPHABET):
        return None
    return "-".join(key[i : i + 4] for i in range(0, _COUPON_LENGTH, 4))


def customers_by_member_no(term: str) -> list[Customer]:
    """The customer with this member number (exact, any case)."""
    number = term.strip().upper()
    if not number or len(number) > 32:
        return []
    return list(db.session.scalars(sa.select(Customer).where(Customer.member_no == number)))


def customers_where(clause: sa.ColumnElement[bool]) -> tuple[int, list[Customer]]:
    """How many customers a contact look-up finds, and the first MAX_HITS of them."""
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Customer).where(clause)) or 0
    found = db.session.scalars(sa.select(Customer).where(clause).order_by(Customer.id).limit(MAX_HITS))
    return count, list(found)


def tickets_by_number_or_code(term: str) -> list[Ticket]:
    """The ticket with this number, and the ticket with this tracking code (at most one each)."""
    found: list[Ticket] = []
    reference = ticket_reference(term)
    if reference is not None:
        ticket = db.session.scalar(sa.select(Ticket).where(Ticket.reference == reference))
        if ticket is not None:
            found.append(ticket)
    by_code = find_by_tracking_code(term)
    if by_code is not None and by_code not in found:
        found.append(by_code)
    return found


def coupons_by_code(term: str) -> list[Redemption]:
    """The redemption that issued this coupon code."""
    code = coupon_key(term)
    if code is None:
        return []
    return list(db.session.scalars(sa.select(Redemption).where(Redemption.coupon_code == code)))
