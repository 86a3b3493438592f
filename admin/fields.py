"""Form fields and validators shared by staff screens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from flask import current_app, request
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from limits import parse as parse_limit
from wtforms import ValidationError

from admin.base import StaffModelView, staff_unit_of_work
from extensions import limiter
from models.contact import InvalidContact, normalise_email, normalise_phone
from models.customer import (
    CONTACT_SEARCH_RIGHT,
    ContactSearch,
    contact_search,
    default_region,
    find_customer_id,
    member_numbers,
    record_contact_search,
    record_refused_contact_search,
)
from models.uow import WriteBusy


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


def may_search_by_contact() -> bool:
    """Whether the signed-in member of staff may look customers up by email, phone or name."""
    return bool(current_user.is_authenticated and current_user.can(CONTACT_SEARCH_RIGHT))


def take_contact_search() -> str | None:
    """Count a look-up by email, phone or name against the staff member's limit; the refusal if over it."""
    if not limiter.enabled:
        return None
    limit = parse_limit(current_app.config["CONTACT_SEARCH_RATE_LIMIT"])
    keys = ("contact-search", str(current_user.id))  # per member of staff, wherever they sign in from
    if limiter.limiter.hit(limit, *keys):
        return None
    reset_at, _remaining = limiter.limiter.get_window_stats(limit, *keys)
    return _(
        "You have reached the limit of %(count)d searches by email, phone number or name. "
        "Try again after %(time)s, or search by member number, city or tag.",
        count=limit.amount,
        time=format_datetime(datetime.fromtimestamp(reset_at, UTC), "yyyy-MM-dd HH:mm"),
    )


def contact_refusal(kind: str) -> str:
    """Why a look-up by email, phone or name was not made for someone without the right."""
    if kind == "name":
        return _(
            "Searching by name needs the right to see personal data, so nothing was looked up. "
            "Search by member number, city or tag instead."
        )
    return _(
        "Searching by email or phone number needs the right to see personal data, so nothing "
        "was looked up. Search by member number, city or tag instead."
    )


def name_not_found() -> str:
    """What a name that finds no one is told: why, and the other ways to find the customer."""
    return _(
        "No customer has this name. Names are matched exactly (whole name as recorded; case and "
        "spacing do not matter), because names are stored encrypted: a part of a name, a "
        "nickname or another spelling finds nothing. Try the customer's phone number, email "
        "address or member number."
    )


@dataclass(frozen=True)
class ContactGate:
    """Whether a look-up by email, phone or name may run, and if not, what to tell the person."""

    may_run: bool
    message: str = ""
    limited: bool = False  # refused by the per-person limit (the others are shown as results)


def gate_contact_search(found: ContactSearch) -> ContactGate:
    """The rule of every search box: the right, then a well-formed term, then the per-person
    limit; a refusal for want of the right or over the limit is audited. Raises WriteBusy."""
    if not may_search_by_contact():
        with staff_unit_of_work():
            record_refused_contact_search(found.kind, "no right")
        return ContactGate(False, contact_refusal(found.kind))
    if found.clause is None:
        return ContactGate(False, found.problem or "")
    over_limit = take_contact_search()
    if over_limit:
        with staff_unit_of_work():
            record_refused_contact_search(found.kind, "rate limit")
        return ContactGate(False, over_limit, limited=True)
    return ContactGate(True)


def known_customer(_form, field) -> None:
    """An optional customer reference (email, phone or member number) that must find someone.

    A reference by email or phone is a look-up by contact like a search on the customer list:
    counted against the member of staff's limit and audited (the kind and whether it found
    someone, never the value). The forms that use this are closed to roles without the right
    to see personal data.
    """
    term = (field.data or "").strip()
    if not term:
        return
    contact = contact_search(term)
    if contact is not None and contact.clause is not None:
        refusal = take_contact_search()
        if refusal:
            raise ValidationError(refusal)
    customer_id = find_customer_id(term)
    if contact is not None and contact.clause is not None:
        try:
            with staff_unit_of_work():
                record_contact_search(contact.kind, 0 if customer_id is None else 1)
        except WriteBusy:
            # Not audited, so not used: the form comes back with what was typed.
            raise ValidationError(
                _("The database was busy; your change was not saved. Please try again.")
            ) from None
    if customer_id is None:
        raise ValidationError(str(_l("No customer has that email, phone or member number.")))


class OpensFromCustomerPage(StaffModelView):
    """A model view whose create form, opened from a customer's page (`?customer_id=`), starts
    with that customer's member number in its `customer_lookup` field."""

    def create_form(self, obj=None):
        form = super().create_form(obj)
        customer_id = request.args.get("customer_id", type=int)
        if request.method == "GET" and customer_id and not form.customer_lookup.data:
            form.customer_lookup.data = member_numbers([customer_id]).get(customer_id, "")
        return form


def member_no_of(view, context, model, name: str) -> str:
    """List formatter: the member number of the row's customer (joined by the list query)."""
    return model.customer.member_no if model.customer else ""


def choices(labels: dict) -> list[tuple[str, object]]:
    """(value, label) pairs for a select field from an enum → label mapping."""
    return [(str(key), label) for key, label in labels.items()]


TAGS_HELP = _l("Comma-separated, e.g. vip, wholesale")
