"""Form fields and validators shared by staff screens."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import ValidationError

from models.contact import InvalidContact, normalise_email, normalise_phone
from models.customer import default_region, find_customer_id


def valid_email(_form, field) -> None:
    """An optional email address that must be well formed if given."""
    if field.data and field.data.strip():
        try:
            normalise_email(field.data)
        except InvalidContact as exc:
            raise ValidationError(str(exc)) from None


def valid_phone(_form, field) -> None:
    """An optional phone number that must be valid in E.164 or the default region."""
    if field.data and field.data.strip():
        try:
            normalise_phone(field.data, default_region())
        except InvalidContact as exc:
            raise ValidationError(str(exc)) from None


def known_customer(_form, field) -> None:
    """An optional customer reference (email, phone or member number) that must find someone."""
    if field.data and field.data.strip() and find_customer_id(field.data) is None:
        raise ValidationError(str(_l("No customer has that email, phone or member number.")))


def member_no_of(view, context, model, name: str) -> str:
    """List formatter: the member number of the row's customer (joined by the list query)."""
    return model.customer.member_no if model.customer else ""


def choices(labels: dict) -> list[tuple[str, object]]:
    """(value, label) pairs for a select field from an enum → label mapping."""
    return [(str(key), label) for key, label in labels.items()]


TAGS_HELP = _l("Comma-separated, e.g. vip, wholesale")
