"""The search box in the top bar: one term, looked up as a customer, a ticket and a coupon.

The term is posted and the results page is the answer to the POST, so it is never in an
address (history, access logs, Referer). Identifiers are looked up first: a member number, a
ticket number or tracking code, a coupon code. Only a term that is none of these is looked up
as an email, phone number or full name, through the same audited, rate-limited contact search
as the customer list, and only for roles that may see personal data. Exactly one hit goes
straight to its page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import abort, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import validate_csrf
from wtforms import StringField, ValidationError
from wtforms.validators import Length, Optional

from admin.base import StaffView, can_view_pii
from admin.fields import gate_contact_search, may_search_by_contact, name_not_found
from models.customer import (
    ContactSearch,
    Customer,
    contact_search,
    record_contact_search,
    record_customers_shown,
)
from models.loyalty.rewards import REDEMPTION_LABELS, Redemption
from models.search import coupons_by_code, customers_by_member_no, customers_where, tickets_by_number_or_code
from models.tickets.feedback import shown_subject
from models.tickets.ticket import STATUS_LABELS, Ticket
from models.uow import WriteBusy
from security import CheckedForm

MAX_TERM_LENGTH = 254
TOKEN_FIELD = "search_token"


class GlobalSearchForm(CheckedForm):
    """The top bar's search box (Flask-WTF's CSRF token, as every CheckedForm)."""

    class Meta:
        # Checked by check_search_token(): the box is on every page, where the page's own form
        # (Flask-Admin's) keeps the name csrf_token to itself, as with the sign-out form's token.
        csrf = False

    term = StringField(validators=[Optional(), Length(max=MAX_TERM_LENGTH)])


def check_search_token() -> None:
    """A POST without the page's search token (Flask-WTF's CSRF token) is refused, changing nothing."""
    try:
        validate_csrf(request.form.get(TOKEN_FIELD))
    except ValidationError:
        abort(400, description="CSRF token missing or invalid.")


@dataclass(frozen=True)
class Hit:
    """One thing found, as the results page lists it."""

    title: str
    detail: str
    url: str


@dataclass
class Group:
    """The hits of one kind, and how many there are (more than listed for a common name)."""

    kind: str
    label: str
    hits: list[Hit]
    count: int


@dataclass
class Outcome:
    """What a search found, and what it could not look up and why."""

    groups: list[Group] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    shown_customer_ids: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(group.count for group in self.groups)


def searched_for() -> str:
    """What the box looks a term up as, for this member of staff."""
    if may_search_by_contact():
        return _(
            "a member number, an exact email address, a phone number in any format, an exact "
            "full name, a ticket number, a tracking code or a coupon code"
        )
    return _("a member number, a ticket number, a tracking code or a coupon code")


def customer_hit(customer: Customer) -> Hit:
    detail = " · ".join(str(v) for v in (customer.display("name", can_view_pii()), customer.city) if v)
    return Hit(str(customer), detail, url_for("customers.details_view", id=customer.id))


def ticket_hit(ticket: Ticket) -> Hit:
    subject = shown_subject(ticket.subject, ticket.summary, can_view_pii())
    status = str(STATUS_LABELS.get(ticket.status, ticket.status))
    return Hit(str(ticket), f"{subject} · {status}", url_for("tickets.ticket_page", ticket_id=ticket.id))


def coupon_hit(redemption: Redemption) -> Hit:
    status = str(REDEMPTION_LABELS.get(redemption.status, redemption.status))
    detail = " · ".join((str(redemption.reward), status, redemption.customer.member_no or ""))
    if current_user.can("loyalty.purchase"):
        url = url_for("customers.coupon", redemption_id=redemption.id)
    else:
        url = url_for("customers.details_view", id=redemption.customer_id)
    return Hit(str(redemption), detail, url)


class GlobalSearchView(StaffView):
    """Every member of staff may search; what each kind finds follows their rights."""

    right = "dashboard.view"

    def is_visible(self) -> bool:
        return False  # reached from the top bar on every page, not from the menu

    @expose("/", methods=("GET", "POST"))
    def index(self):
        if request.method == "POST":
            check_search_token()
        form = GlobalSearchForm()
        term = (form.term.data or "").strip() if form.validate_on_submit() else ""
        if not term:
            # A GET, an empty box or a term too long: the page with the box (what was typed, and why).
            return self._page(form, None)
        outcome = self.look_up(term)
        if outcome.total == 1 and not outcome.notices:
            (group,) = outcome.groups
            return redirect(group.hits[0].url, code=303)
        html = self._page(form, outcome)
        try:
            self._audit_disclosure(outcome)
        except WriteBusy:
            # Personal data is shown only once its showing is audited.
            busy = _("The database was busy; your search was not run. Please try again.")
            return self._page(form, Outcome(notices=[busy]))
        return html

    def _page(self, form: GlobalSearchForm, outcome: Outcome | None) -> str:
        term = (form.term.data or "").strip()
        return self.render(
            "admin/search_results.html", form=form, term=term, outcome=outcome, searched_for=searched_for()
        )

    def look_up(self, term: str) -> Outcome:
        """Identifiers first; an email, phone or name only if no identifier matched."""
        outcome = Outcome()
        customers = customers_by_member_no(term)
        self._add(outcome, "customer", _("Customers"), [customer_hit(c) for c in customers])
        outcome.shown_customer_ids.extend(c.id for c in customers)
        self._add(outcome, "ticket", _("Tickets"), [ticket_hit(t) for t in tickets_by_number_or_code(term)])
        self._add(outcome, "coupon", _("Coupons"), [coupon_hit(r) for r in coupons_by_code(term)])
        if not outcome.groups:
            found = contact_search(term, by_name=True)
            if found is not None:
                self._look_up_by_contact(found, outcome)
        return outcome

    @staticmethod
    def _add(outcome: Outcome, kind: str, label: str, hits: list[Hit], count: int | None = None) -> None:
        if hits:
            outcome.groups.append(Group(kind, label, hits, len(hits) if count is None else count))

    def _look_up_by_contact(self, found: ContactSearch, outcome: Outcome) -> None:
        """The customer list's rules (gate_contact_search), then the look-up, audited."""
        try:
            gate = gate_contact_search(found)
            if not gate.may_run or found.clause is None:  # a term that may run is well formed
                outcome.notices.append(gate.message)
                return
            count, customers = customers_where(found.clause)
            with self.unit_of_work():
                record_contact_search(found.kind, count)
        except WriteBusy:
            outcome.notices.append(_("The database was busy; your search was not run. Please try again."))
            return
        self._add(outcome, "customer", _("Customers"), [customer_hit(c) for c in customers], count)
        outcome.shown_customer_ids.extend(c.id for c in customers)
        if count == 0 and found.kind == "name":
            outcome.notices.append(name_not_found())

    def _audit_disclosure(self, outcome: Outcome) -> None:
        """Customers' names shown unmasked are a disclosure, audited as the customer list's are."""
        if outcome.shown_customer_ids and can_view_pii():
            with self.unit_of_work():
                record_customers_shown(outcome.shown_customer_ids, ["name"])
