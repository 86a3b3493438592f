"""Customers: personal fields sealed at rest, blind indexes for exact search, masking by role."""

from __future__ import annotations

import enum
import typing as t
from collections.abc import Callable
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, validates

from models import Model, UTCDateTime, db, one_of, stamp_after_insert, utcnow
from models.contact import (
    InvalidContact,
    email_lookup_key,
    mask_date,
    mask_email,
    mask_name,
    mask_phone,
    mask_text,
    normalise_email,
    normalise_name,
    normalise_phone,
)
from models.crypto import EncryptedDate, EncryptedText, blind_index
from models.uow import current_uow


class Gender(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


class SourceChannel(enum.StrEnum):
    STORE = "store"
    ONLINE = "online"
    WECHAT = "wechat"
    PHONE = "phone"
    REFERRAL = "referral"
    EVENT = "event"
    IMPORT = "import"
    OTHER = "other"


# Keyed by the enum members, which are strings: looked up with the stored value.
GENDER_LABELS: dict[str, LazyString] = {
    Gender.FEMALE: _l("Female"),
    Gender.MALE: _l("Male"),
    Gender.OTHER: _l("Other"),
    Gender.UNDISCLOSED: _l("Undisclosed"),
}
SOURCE_LABELS: dict[str, LazyString] = {
    SourceChannel.STORE: _l("In store"),
    SourceChannel.ONLINE: _l("Online shop"),
    SourceChannel.WECHAT: _l("WeChat"),
    SourceChannel.PHONE: _l("Phone"),
    SourceChannel.REFERRAL: _l("Referral"),
    SourceChannel.EVENT: _l("Event"),
    SourceChannel.IMPORT: _l("Import"),
    SourceChannel.OTHER: _l("Other"),
}
CUSTOMER_LANGUAGES = {"zh_Hans_CN": "简体中文", "en": "English"}

# Personal fields, each with the mask shown to staff without PII rights.
PII_MASKS: dict[str, Callable[[t.Any], str]] = {
    "name": mask_name,
    "email": mask_email,
    "phone": mask_phone,
    "birthday": mask_date,
    "address": mask_text,
    "notes": mask_text,
}
PII_FIELDS = tuple(PII_MASKS)


class Customer(Model):
    """A customer of the shop. Personal fields are encrypted; segmentation fields are plain."""

    __tablename__ = "customer"
    __table_args__ = (one_of("gender", Gender, "gender"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_no: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str | None] = mapped_column(EncryptedText("customer.name"))
    # Names are sealed, so they can only be matched whole: by the keyed hash of the normalised name.
    name_bidx: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    email: Mapped[str | None] = mapped_column(EncryptedText("customer.email"))
    email_bidx: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    phone: Mapped[str | None] = mapped_column(EncryptedText("customer.phone"))
    phone_bidx: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    birthday: Mapped[date | None] = mapped_column(EncryptedDate("customer.birthday"))
    address: Mapped[str | None] = mapped_column(EncryptedText("customer.address"))
    notes: Mapped[str | None] = mapped_column(EncryptedText("customer.notes"))
    city: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    gender: Mapped[str] = mapped_column(sa.String(16), default=Gender.UNDISCLOSED.value)
    language: Mapped[str] = mapped_column(sa.String(16), default="zh_Hans_CN")
    source_channel: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    tags: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __str__(self) -> str:
        return self.member_no or f"#{self.id}"

    @validates("name")
    def _index_name(self, _key: str, value: str | None) -> str | None:
        if not value or not value.strip():
            self.name_bidx = None
            return None
        self.name_bidx = name_index(value)
        return value.strip()

    @validates("email")
    def _normalise_email(self, _key: str, value: str | None) -> str | None:
        if not value or not value.strip():
            self.email_bidx = None
            return None
        normalised = normalise_email(value)
        self.email_bidx = blind_index("email", normalised.lower())
        return normalised

    @validates("phone")
    def _normalise_phone(self, _key: str, value: str | None) -> str | None:
        if not value or not value.strip():
            self.phone_bidx = None
            return None
        normalised = normalise_phone(value, default_region())
        self.phone_bidx = blind_index("phone", normalised)
        return normalised

    @validates("tags")
    def _normalise_tags(self, _key: str, value: str | None) -> str:
        parts = [t.strip() for t in (value or "").replace("，", ",").split(",")]
        return ",".join(dict.fromkeys(t for t in parts if t))

    def display(self, field: str, can_view_pii: bool) -> object:
        """A field's value as this viewer may see it: masked unless they hold PII rights."""
        value = getattr(self, field)
        if field in PII_MASKS and not can_view_pii:
            return PII_MASKS[field](value)
        return value


@sa.event.listens_for(Customer, "after_insert")
def _assign_member_no(_mapper, connection, target: Customer) -> None:
    """Customers created without a member number get one derived from their id."""
    if not target.member_no:
        stamp_after_insert(connection, target, "member_no", f"M{target.id:08d}")


def default_region() -> str:
    """The region national phone numbers are read in (config DEFAULT_PHONE_REGION)."""
    return current_app.config.get("DEFAULT_PHONE_REGION", "CN")


# The blind index's purpose for names; the migration that filled the index for existing rows
# (e1b0a0000001) holds a copy of it and of normalise_name.
NAME_INDEX_PURPOSE = "name"


def name_index(name: str) -> str | None:
    """The blind index of a full name (normalised: see models.contact.normalise_name)."""
    return blind_index(NAME_INDEX_PURPOSE, normalise_name(name))


def could_be_name(term: str) -> bool:
    """Whether a search term could be a full name: letters, and no digit or @."""
    return any(ch.isalpha() for ch in term) and not any(ch.isdigit() or ch == "@" for ch in term)


# Who may look customers up by email or phone (blind index): a look-up confirms the address or
# number it was given, so it needs the right to see them.
CONTACT_SEARCH_RIGHT = "customer.view_pii"


class ContactSearch(t.NamedTuple):
    """A search term read as a contact key: its kind, and its WHERE clause (None if malformed)."""

    kind: str  # "email", "phone" or "name"
    clause: sa.ColumnElement[bool] | None
    problem: str | None = None


def contact_search(term: str, *, by_name: bool = False) -> ContactSearch | None:
    """The term as an email, phone (or, if asked, name) look-up by blind index; None otherwise.

    Anything with an @ is an email (a malformed one says why); a term without letters that
    reads as a valid phone number is a phone; with `by_name`, letters without digits are a full
    name; the rest (member numbers, cities, tags) is not a contact key.
    """
    term = term.strip()
    if by_name and could_be_name(term):
        return ContactSearch("name", Customer.name_bidx == name_index(term))
    if "@" in term:
        try:
            return ContactSearch("email", Customer.email_bidx == blind_index("email", email_lookup_key(term)))
        except InvalidContact as exc:
            return ContactSearch("email", None, str(exc))
    if any(ch.isalpha() for ch in term):
        return None  # a member number or a name, never a phone number: skip the costly parse
    try:
        normalised = normalise_phone(term, default_region())
    except InvalidContact:
        return None
    return ContactSearch("phone", Customer.phone_bidx == blind_index("phone", normalised))


def contact_filter(term: str) -> sa.ColumnElement[bool] | None:
    """A WHERE clause matching the term by blind index, or None if it is no email/phone."""
    found = contact_search(term)
    return found.clause if found else None


def record_contact_search(kind: str, results: int) -> None:
    """Audit a look-up by email, phone or name: who and when (the unit of work), the kind, the count."""
    current_uow().audit("customer.search", "customer", None, [kind], detail=f"key={kind} results={results}")


def record_customers_shown(customer_ids: t.Iterable[int], fields: list[str]) -> None:
    """Audit a page that showed these customers' personal fields unmasked (a list, a search)."""
    ids = ",".join(str(i) for i in dict.fromkeys(customer_ids))
    if ids:
        current_uow().audit("customer.list", "customer", None, fields, detail=f"ids={ids}")


def record_refused_contact_search(kind: str, reason: str) -> None:
    """Audit a look-up by email, phone or name that was refused ("no right", "rate limit"); never the term."""
    detail = f"key={kind} reason={reason}"
    current_uow().audit("customer.search_refused", "customer", None, [kind], detail=detail)


def find_customer(term: str) -> tuple[int, str | None] | None:
    """(id, member number) of the customer with an exact email, phone or member number."""
    term = (term or "").strip()
    if not term:
        return None
    clause = contact_filter(term)
    if clause is None:
        clause = Customer.member_no == term.upper()
    row = db.session.execute(
        sa.select(Customer.id, Customer.member_no).where(clause).order_by(Customer.id).limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def member_numbers(customer_ids) -> dict[int, str]:
    """Member numbers by customer id, in one query, without decrypting anything."""
    ids = [cid for cid in set(customer_ids) if cid is not None]
    if not ids:
        return {}
    query = sa.select(Customer.id, Customer.member_no).where(Customer.id.in_(ids))
    return {customer_id: member_no or "" for customer_id, member_no in db.session.execute(query)}


def customer_language(customer_id: int | None) -> str | None:
    """A customer's language, without loading (and decrypting) the rest of the record."""
    if customer_id is None:
        return None
    return db.session.scalar(sa.select(Customer.language).where(Customer.id == customer_id))


def find_customer_id(term: str) -> int | None:
    """A customer's id from an exact email, phone or member number; None if none matches."""
    found = find_customer(term)
    return found[0] if found else None


class CustomerMustBeKept(ValueError):
    """The customer has financial records (purchases, points) that must be kept."""


def check_customer_deletable(customer_id: int) -> None:
    """Refuse to delete a customer whose purchases or points history must be kept."""
    # Imported here: the loyalty package reads customers, and customers would import it back.
    from models.loyalty.purchases import has_loyalty_history

    if has_loyalty_history(customer_id):
        raise CustomerMustBeKept(
            str(_l("Purchases and points history must be kept; this customer cannot be deleted."))
        )
