"""Form fields and validators shared by staff screens."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
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


# Staff sign in with an address that may be on a private domain: the demo's @patron.local, an
# office's @host.localhost or @team.test. email-validator 2.4 refuses these special-use names
# whatever its options (syntax.py checks SPECIAL_USE_DOMAIN_NAMES unconditionally; only "test"
# is let through, in a "test environment"), so such an address is checked with ".example"
# added: every label of it still gets the library's full syntax check.
PRIVATE_STAFF_DOMAINS = ("local", "localhost", "test")


def staff_email_problem(address: str) -> str | None:
    """Why an address cannot be a staff sign-in, or None if it can."""
    local, at, domain = address.strip().rpartition("@")
    private = at and domain.lower().rstrip(".").rsplit(".", 1)[-1] in PRIVATE_STAFF_DOMAINS
    checked = f"{local}@{domain}.example" if private else address.strip()
    try:
        validate_email(checked, check_deliverability=False)
    except EmailNotValidError as exc:
        return _("Not a valid email address: %(reason)s", reason=str(exc))
    return None


def valid_staff_email(_form, field) -> None:
    """A staff sign-in address: well formed; private domains such as the demo's @patron.local allowed."""
    if field.data and field.data.strip():
        problem = staff_email_problem(field.data)
        if problem:
            raise ValidationError(problem)


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
