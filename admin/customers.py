"""The customer screens: PII shown or masked by role, exact search by blind index, audited.

Search terms travel in a POST to /search/, never in a URL: the list pages carry the term
sealed (`q`, opaque, for one member of staff, expiring). A look-up by email or phone needs
the right to see personal data; each one is audited (its kind and count, never the term) and
counted against CONTACT_SEARCH_RATE_LIMIT per member of staff.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import abort, flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.form import SecureForm
from flask_admin.model.base import ViewArgs
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import (
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from admin.base import StaffModelView, can_view_pii, flash_busy
from admin.fields import (
    TAGS_HELP,
    choices,
    contact_refusal,
    gate_contact_search,
    may_search_by_contact,
    name_not_found,
    valid_email,
    valid_phone,
)
from insights.customer360 import customer_summary, customer_timeline, message_excerpts
from models import db, utcnow
from models.crypto import UnreadableValue, keyring
from models.customer import (
    CUSTOMER_LANGUAGES,
    GENDER_LABELS,
    PII_FIELDS,
    SOURCE_LABELS,
    ContactSearch,
    Customer,
    CustomerMustBeKept,
    check_customer_deletable,
    contact_search,
    could_be_name,
    record_contact_search,
    record_customers_shown,
)
from models.loyalty.ledger import (
    ENTRY_LABELS,
    REASON_LABELS,
    account_state,
    adjust_points,
    expiring_points,
    reason_label,
    recent_ledger,
)
from models.loyalty.programme import LoyaltyError, tiers
from models.loyalty.purchases import PURCHASE_CHANNELS
from models.loyalty.rewards import (
    REDEMPTION_LABELS,
    AlreadyRedeemed,
    Redemption,
    coupon_issued,
    new_coupon_code,
    redeem,
    redeemable_rewards,
)
from models.loyalty.tiers import TierChange
from models.surveys.invitations import INVITATION_LABELS, customer_invitations
from models.tickets.ticket import MESSAGE_KIND_LABELS
from models.tickets.ticket import STATUS_LABELS as TICKET_STATUS_LABELS
from models.uow import WriteBusy
from security import CheckedForm


def personal_value(view, context, model: Customer, name: str):
    """Formatter: a personal field, masked for staff without PII rights."""
    return model.display(name, can_view_pii()) or ""


class AdjustPointsForm(CheckedForm):
    points = IntegerField(
        _l("Points (+ or −)"), validators=[DataRequired(), NumberRange(-1_000_000, 1_000_000)]
    )
    reason = StringField(_l("Reason"), validators=[DataRequired(), Length(max=300)])


def gender_label(view, context, model: Customer, name: str):
    return GENDER_LABELS.get(model.gender, model.gender)


def source_label(view, context, model: Customer, name: str):
    return SOURCE_LABELS.get(model.source_channel or "", model.source_channel or "")


def language_label(view, context, model: Customer, name: str):
    return CUSTOMER_LANGUAGES.get(model.language, model.language)


PERSONAL_FORMATTERS = {name: personal_value for name in PII_FIELDS}


# Redemptions -----------------------------------------------------------------------------------
# A redemption form carries its coupon code, drawn when the form was drawn and sealed for one
# member of staff and one customer: the same form sent twice asks for the same code, and the
# domain issues a code once (the second answer shows the coupon the first one made).
REDEEM_LIFETIME = timedelta(hours=2)


def seal_redemption(staff_id: int, customer_id: int, now: datetime) -> str:
    """A one-time token for a redemption form: a fresh coupon code, sealed, expiring."""
    payload = json.dumps({"code": new_coupon_code(), "expires": int((now + REDEEM_LIFETIME).timestamp())})
    return keyring().seal(payload, f"customer.redeem:{staff_id}:{customer_id}")


def open_redemption(token: str, staff_id: int, customer_id: int, now: datetime) -> str | None:
    """The coupon code a redemption form was drawn with; None if expired, foreign or forged."""
    try:
        payload = json.loads(keyring().open(token, f"customer.redeem:{staff_id}:{customer_id}"))
        code, expires = str(payload["code"]), int(payload["expires"])
    except (UnreadableValue, ValueError, KeyError, TypeError):
        return None
    return code if now.timestamp() < expires else None


class RedeemForm(CheckedForm):
    # Not limited to the rewards offered: one that stopped being redeemable since the form was
    # drawn is refused by redeem(), with its reason.
    reward = RadioField(_l("Reward"), coerce=int, validate_choice=False, validators=[DataRequired()])
    token = HiddenField(validators=[DataRequired()])


# Searches --------------------------------------------------------------------------------------
SEARCH_ARG = "q"
SEARCH_LIFETIME = timedelta(minutes=30)
MAX_SEARCH_LENGTH = 254


class SealedSearch(t.NamedTuple):
    """What a search token holds: the term, and whether it was looked up by name when posted."""

    term: str
    by_name: bool = False


def seal_search(term: str, staff_id: int, now: datetime, *, by_name: bool = False) -> str:
    """An opaque token for a search term, for one member of staff, expiring (sealed by the key ring).

    `by_name` says the term was looked up by name when it was posted (counted and audited then),
    so that the list's later pages look it up the same way without counting it again.
    """
    expires = int((now + SEARCH_LIFETIME).timestamp())
    payload = json.dumps({"term": term, "expires": expires, "by_name": by_name})
    return keyring().seal(payload, f"customer.search:{staff_id}")


def open_search(token: str, staff_id: int, now: datetime) -> SealedSearch | None:
    """The search in a token sealed for this member of staff; None if expired, foreign or forged."""
    try:
        payload = json.loads(keyring().open(token, f"customer.search:{staff_id}"))
        found = SealedSearch(str(payload["term"]), payload.get("by_name") is True)
        expires = int(payload["expires"])
    except (UnreadableValue, ValueError, KeyError, TypeError, AttributeError):
        return None
    return found if now.timestamp() < expires else None


@dataclass(frozen=True)
class ActiveSearch:
    """The search a list page shows: its token from the address, and the term sealed in it."""

    token: str | None = None
    term: str | None = None
    by_name: bool = False  # the term is looked up by exact name (see CustomerView.search)

    @property
    def expired(self) -> bool:
        return self.token is not None and self.term is None


def active_search() -> ActiveSearch:
    """This request's search, read from its `q` argument once."""
    if "customer_search" not in g:
        token = request.args.get(SEARCH_ARG) or None
        sealed = open_search(token, current_user.id, utcnow()) if token else None
        g.customer_search = ActiveSearch(token, *sealed) if sealed else ActiveSearch(token)
    return g.customer_search


def search_refusal(found: ContactSearch | None) -> str | None:
    """Why a search finds nothing before it is run: no right to look up by contact, or a bad address."""
    if found is None:
        return None
    if not may_search_by_contact():
        return contact_refusal(found.kind)
    return found.problem


class CustomerSearchForm(SecureForm):
    """The list's search box. Flask-Admin's CSRF, as on the list's other forms."""

    search = StringField(validators=[Optional(), Length(max=MAX_SEARCH_LENGTH)])


@dataclass
class SearchBox:
    """What the list template needs to draw the search box and its notice."""

    form: CustomerSearchForm
    action: str
    term: str
    clear_url: str
    placeholder: str
    help: str
    notice: str | None


LABEL_FORMATTERS = {
    "gender": gender_label,
    "source_channel": source_label,
    "language": language_label,
}


class CustomerView(StaffModelView):
    """Customers: agents and up see and edit PII (audited), analysts see it masked."""

    right = "customer.list"
    endpoint_rights = {
        "create_view": "customer.edit",
        "edit_view": "customer.edit",
        "delete_view": "customer.erase",
        "action_view": "customer.edit",
        "export": "customer.export",
        "adjust_points": "loyalty.manage",
        "redeem": "loyalty.purchase",
        "coupon": "loyalty.purchase",
    }
    action_rights = {"delete": "customer.erase", "invite": "survey.invite"}
    audit_type = "customer"
    column_list = [
        "member_no",
        "name",
        "email",
        "phone",
        "city",
        "gender",
        "source_channel",
        "tags",
        "created_at",
    ]
    column_details_list = [
        "member_no",
        "name",
        "email",
        "phone",
        "birthday",
        "gender",
        "language",
        "city",
        "address",
        "source_channel",
        "tags",
        "notes",
        "created_at",
        "updated_at",
    ]
    column_export_list = column_details_list
    column_labels = {
        "member_no": _l("Member no."),
        "name": _l("Name"),
        "email": _l("Email"),
        "phone": _l("Phone"),
        "birthday": _l("Birthday"),
        "gender": _l("Gender"),
        "language": _l("Language"),
        "city": _l("City"),
        "address": _l("Address"),
        "source_channel": _l("Source"),
        "tags": _l("Tags"),
        "notes": _l("Notes"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
    }
    column_formatters = PERSONAL_FORMATTERS | LABEL_FORMATTERS
    column_formatters_export = PERSONAL_FORMATTERS | LABEL_FORMATTERS
    column_sortable_list = ["member_no", "city", "gender", "source_channel", "created_at"]
    column_default_sort = ("created_at", True)
    # Plain columns searched by ILIKE; an email or phone is matched by blind index instead.
    column_searchable_list = ["member_no", "city", "tags"]
    column_filters = ["city", "gender", "language", "source_channel", "tags", "created_at"]
    can_view_details = True
    list_template = "admin/customer_list.html"
    details_template = "admin/customer_details.html"
    simple_list_pager = False

    form_columns = [
        "name",
        "email",
        "phone",
        "birthday",
        "gender",
        "language",
        "city",
        "address",
        "source_channel",
        "tags",
        "notes",
        "member_no",
    ]
    form_extra_fields = {
        "name": StringField(_l("Name"), validators=[Optional(), Length(max=200)]),
        "email": StringField(_l("Email"), validators=[Optional(), Length(max=254), valid_email]),
        "phone": StringField(_l("Phone"), validators=[Optional(), Length(max=40), valid_phone]),
        "birthday": DateField(_l("Birthday"), validators=[Optional()]),
        "address": TextAreaField(_l("Address"), validators=[Optional(), Length(max=500)]),
        "notes": TextAreaField(_l("Notes"), validators=[Optional(), Length(max=5000)]),
    }
    form_overrides = {"gender": SelectField, "language": SelectField, "source_channel": SelectField}
    form_args = {
        "gender": {"choices": choices(GENDER_LABELS), "label": _l("Gender")},
        "language": {"choices": list(CUSTOMER_LANGUAGES.items()), "label": _l("Language")},
        "source_channel": {"choices": choices(SOURCE_LABELS), "label": _l("Source")},
        "tags": {"description": TAGS_HELP, "label": _l("Tags")},
        "city": {"label": _l("City")},
        "member_no": {"label": _l("Member no."), "description": _l("Leave empty to assign one.")},
    }

    @property
    def can_export(self) -> bool:
        return self.may("export")

    # Search. Written after Flask-Admin 2.2.1 (flask_admin/model/base.py): index_view reads the
    # term from `?search=` (_get_list_extra_args) and writes it into every list URL it makes
    # (_get_list_url: pager, sort, page size, return_url); here the term comes from the sealed
    # `q` instead, and goes back into the URLs sealed.
    def _handle_view(self, name: str, **kwargs: t.Any):
        refused = super()._handle_view(name, **kwargs)
        if refused is None and name in ("index_view", "export") and "search" in request.args:
            # An old or pasted address with a term in it: the term is dropped, never searched for.
            flash(
                _("Searches are not read from the page address. Type your search in the search box."),
                "info",
            )
            kept = {k: v for k, v in request.args.items() if k != "search"}
            return redirect(self.get_url(".index_view", **kept))
        return refused

    def _get_list_extra_args(self) -> ViewArgs:
        args = super()._get_list_extra_args()
        extra = {k: v for k, v in args.extra_args.items() if k != SEARCH_ARG}
        return args.clone(search=active_search().term, extra_args=extra)

    def _get_list_url(self, view_args: ViewArgs) -> str:
        if view_args.search:
            current = active_search()
            if current.term == view_args.search and current.token:
                token = current.token
            else:
                by_name = current.by_name and current.term == view_args.search
                token = seal_search(view_args.search, current_user.id, utcnow(), by_name=by_name)
            extra = view_args.extra_args | {SEARCH_ARG: token}
            view_args = view_args.clone(search=None, extra_args=extra)
        return super()._get_list_url(view_args)

    def _apply_search(self, query, count_query, joins, count_joins, search):
        current = active_search()
        found = contact_search(search, by_name=current.by_name and current.term == search)
        if found is None:
            return super()._apply_search(query, count_query, joins, count_joins, search)
        # By blind index, for those who may; anyone else, and a malformed address, finds nothing.
        match = found.clause if found.clause is not None and may_search_by_contact() else sa.false()
        query = query.filter(match)
        if count_query is not None:
            count_query = count_query.filter(match)
        return query, count_query, joins, count_joins

    @expose("/search/", methods=("POST",))
    def search(self):
        """The search box: checked, audited and counted here, then the list with the term sealed."""
        form = CustomerSearchForm(request.form)
        # The list's sort, filters and page size come in the action's address (never the term).
        view_args = self._get_list_extra_args().clone(page=None, search=None)
        if not form.validate():
            if "csrf_token" in form.errors:
                abort(400, description="CSRF token missing or invalid.")
            for message in form.search.errors:
                flash(str(message), "error")
            return redirect(self._get_list_url(view_args))
        term = (form.search.data or "").strip()
        found = contact_search(term) if term else None
        if found is None and could_be_name(term) and not self._count(term, view_args):
            # Words that are no member number, city or tag here: looked up as a full name.
            g.customer_search = ActiveSearch(term=term, by_name=True)
            found = contact_search(term, by_name=True)
        if found is not None and not self._look_up_by_contact(term, found, view_args):
            return redirect(self._get_list_url(view_args))
        return redirect(self._get_list_url(view_args.clone(search=term or None)))

    def _count(self, term: str, view_args: ViewArgs) -> int:
        """How many customers the list finds for a term, under the list's filters."""
        count, _query = self.get_list(0, None, False, term, view_args.filters, execute=False, page_size=0)
        return count or 0

    def _look_up_by_contact(self, term: str, found: ContactSearch, view_args: ViewArgs) -> bool:
        """Audit a search by email, phone or name and count it against the limit; False if it may not run.

        A search refused for want of the right still goes on to the list, which says why it
        found nothing; a malformed address is looked up nowhere and the list says what is wrong.
        """
        try:
            gate = gate_contact_search(found)
            if not gate.may_run:
                if gate.limited:
                    flash(gate.message, "error")
                return not gate.limited
            count = self._count(term, view_args)
            with self.unit_of_work():
                record_contact_search(found.kind, count)
        except WriteBusy:
            flash(_("The database was busy; your search was not run. Please try again."), "error")
            return False
        return True

    def search_box(self, kwargs: dict) -> dict:
        """The list template's search box (a POST form), in place of Flask-Admin's GET one."""
        current = active_search()
        view_args = self._get_list_extra_args()
        list_args = {k: v for k, v in request.args.items() if k not in (SEARCH_ARG, "search", "page")}
        notice = _("This search has expired. Please search again.") if current.expired else None
        if current.term:
            notice = search_refusal(contact_search(current.term, by_name=current.by_name))
            if notice is None and current.by_name and not kwargs.get("count"):
                notice = name_not_found()
        if may_search_by_contact():
            placeholder = _("Member no., email, phone, full name, city or tag")
            help_text = _(
                "Finds a member number, an exact email address, a phone number in any format, "
                "an exact full name, a city or a tag."
            )
        else:
            placeholder = _("Member no., city or tag")
            help_text = _(
                "Finds a member number, a city or a tag. Searching by email, phone or name needs "
                "the right to see personal data."
            )
        extra_args = dict(kwargs.get("extra_args") or {})
        if current.term and current.token:
            extra_args[SEARCH_ARG] = current.token  # the filter form keeps the search
        box = SearchBox(
            form=CustomerSearchForm(formdata=None),
            action=self.get_url(".search", **list_args),
            term=current.term or "",
            clear_url=self._get_list_url(view_args.clone(search=None, page=None)),
            placeholder=placeholder,
            help=help_text,
            notice=notice,
        )
        # Flask-Admin's own search box is a GET form, and its filter form would carry the term.
        return {"search_box": box, "search_supported": False, "search": None, "extra_args": extra_args}

    def on_model_delete(self, model: Customer) -> None:
        try:
            check_customer_deletable(model.id)
        except CustomerMustBeKept as exc:
            raise ValidationError(str(exc)) from None
        super().on_model_delete(model)

    @action("invite", _l("Invite to a survey…"))
    def action_invite(self, ids):
        return redirect(url_for("survey_invite.index", ids=",".join(ids)))

    @expose("/adjust/<int:customer_id>", methods=("POST",))
    def adjust_points(self, customer_id: int):
        """A manual points adjustment by a manager: reason required, audited."""
        form = AdjustPointsForm()
        if not form.validate_on_submit():
            flash(_("Give a whole number of points other than 0 and a reason."), "error")
            return redirect(url_for(".details_view", id=customer_id))
        try:
            with self.unit_of_work():
                adjust_points(customer_id, form.points.data, form.reason.data)
        except LoyaltyError as exc:
            flash(str(exc), "error")
        except WriteBusy:
            flash_busy()
        else:
            flash(_("Points adjusted."), "success")
            return redirect(url_for(".details_view", id=customer_id))
        return self._details_page(customer_id)  # shown again with the points and reason typed

    @expose("/redeem/<int:customer_id>", methods=("GET", "POST"))
    def redeem(self, customer_id: int):
        """Redeem a reward for a customer: the rewards they can have now, the coupon on success."""
        customer = db.session.get(Customer, customer_id)
        if customer is None:
            abort(404)
        form = RedeemForm()
        if form.is_submitted():
            if not form.validate():
                flash(_("Pick a reward."), "error")
            else:
                done = self._redeem(customer_id, form)
                if done is not None:
                    return done
        if not form.token.data:
            form.token.data = seal_redemption(current_user.id, customer_id, utcnow())
        rewards = redeemable_rewards(customer_id)
        form.reward.choices = [(reward.id, str(reward)) for reward in rewards]
        balance, tier_code = account_state(customer_id)
        tier_names = {tier.code: str(tier) for tier in tiers()}
        return self.render(
            "admin/customer_redeem.html",
            customer=customer,
            form=form,
            rewards=rewards,
            balance=balance,
            tier=tier_names.get(tier_code, tier_code),
            tier_names=tier_names,
        )

    def _redeem(self, customer_id: int, form: RedeemForm):
        """Call the domain with the form's coupon code; a redirect when done, None to show the form again."""
        code = open_redemption(form.token.data, current_user.id, customer_id, utcnow())
        if code is None:
            flash(_("This form has expired. Pick the reward again."), "error")
            form.token.data = ""  # a fresh one is drawn
            return None
        try:
            with self.unit_of_work():
                result = redeem(customer_id, form.reward.data, coupon_code=code)
        except LoyaltyError as exc:
            # The same form sent twice at once: on PostgreSQL the second waits for the first's
            # balance row and may then find too few points or no stock left, although its coupon
            # was issued. Whatever the refusal, a coupon issued under this form's code is the answer.
            earlier = coupon_issued(code)
            if earlier is not None and earlier.customer_id == customer_id:
                flash(_("This redemption was made already; here is its coupon."), "info")
                return redirect(url_for(".coupon", redemption_id=earlier.id))
            if isinstance(exc, AlreadyRedeemed):  # cannot be: the token is theirs
                abort(409)
            flash(str(exc), "error")  # the domain's reason; nothing changed
            return None
        except WriteBusy:
            flash_busy()
            return None
        flash(_("Reward redeemed."), "success")
        return redirect(url_for(".coupon", redemption_id=result.redemption.id))

    @expose("/coupon/<int:redemption_id>")
    def coupon(self, redemption_id: int):
        """A coupon, printable: code, reward, points spent, valid until."""
        redemption = db.session.get(Redemption, redemption_id)
        if redemption is None:
            abort(404)
        member_no = db.session.scalar(
            sa.select(Customer.member_no).where(Customer.id == redemption.customer_id)
        )
        return self.render(
            "admin/coupon.html",
            redemption=redemption,
            reward=redemption.reward,
            member_no=member_no,
            customer_id=redemption.customer_id,
            status_labels=REDEMPTION_LABELS,
        )

    def _details_page(self, customer_id: int):
        """The customer page, as Flask-Admin's details view renders it."""
        customer = self.get_one(str(customer_id))
        if customer is None:
            return redirect(url_for(".index_view"))
        return self.render(
            self.details_template,
            model=customer,
            details_columns=self._details_columns,
            get_value=self.get_detail_value,
            return_url=url_for(".index_view"),
        )

    def loyalty_panel(self, customer: Customer) -> dict:
        balance, tier_code = account_state(customer.id)
        tier_names = {t.code: str(t) for t in tiers()}
        return {
            "balance": balance,
            "tier": tier_names.get(tier_code, "—"),
            "expiring": expiring_points(customer.id),
            "ledger": recent_ledger(customer.id, 15),
            "kinds": ENTRY_LABELS,
            "reasons": REASON_LABELS,
            "reason": reason_label,
            "tier_names": tier_names,
            "tier_changes": db.session.scalars(
                sa.select(TierChange)
                .where(TierChange.customer_id == customer.id)
                .order_by(TierChange.id.desc())
            ).all(),
            "adjust_form": AdjustPointsForm() if current_user.can("loyalty.manage") else None,
        }

    def customer_page(self, customer: Customer) -> dict:
        """What the customer 360 shows besides the fields: the figures, one timeline page, actions."""
        pii, session = can_view_pii(), db.session()
        page = min(max(request.args.get("page", 1, type=int) or 1, 1), 10**6)
        timeline = customer_timeline(session, customer.id, utcnow(), page)
        notes = [row.item_id for row in timeline.rows if row.kind in ("message", "note")]
        return {
            "heading_name": customer.display("name", pii) or "",
            "zh": str(get_locale() or "en").startswith("zh"),
            "summary": customer_summary(session, customer.id, customer.tags),
            "timeline": timeline,
            # Message bodies are sealed personal data: an excerpt only for those who may read it.
            "excerpts": message_excerpts(session, notes) if pii else {},
            "labels": {
                "points": ENTRY_LABELS,
                "reason": reason_label,
                "ticket": TICKET_STATUS_LABELS,
                "message": MESSAGE_KIND_LABELS,
                "coupon": REDEMPTION_LABELS,
                "invitation": INVITATION_LABELS,
                "channel": PURCHASE_CHANNELS,
            },
            "may": {
                "ticket": current_user.can("ticket.work"),
                "purchase": current_user.can("loyalty.purchase"),
                "adjust": current_user.can("loyalty.manage"),
                "redeem": self.may("redeem"),
                "invite": current_user.can("survey.invite"),
            },
        }

    def render(self, template, **kwargs):
        """Every page that shows a customer's unmasked details leaves an audit event."""
        if template == self.list_template:
            kwargs.update(self.search_box(kwargs))
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["loyalty"] = self.loyalty_panel(kwargs["model"])
            kwargs["survey_invitations"] = customer_invitations(kwargs["model"].id)
            kwargs["invitation_labels"] = INVITATION_LABELS
            kwargs.update(self.customer_page(kwargs["model"]))
        # Render first: the audit commit expires every loaded customer, and rendering after
        # it would fetch and decrypt each row again.
        html = super().render(template, **kwargs)
        if can_view_pii():
            self._audit_disclosure(template, kwargs)
        return html

    def _audit_disclosure(self, template: str, kwargs: dict) -> None:
        model = kwargs.get("model")
        if template == self.list_template and kwargs.get("data"):
            shown = [c for c, _label in self._list_columns if c in PII_FIELDS]
            ids = [m.id for m in kwargs["data"]]  # read before the write begins
            with self.unit_of_work():
                record_customers_shown(ids, shown)
            return
        if template in (self.details_template, self.details_modal_template) and model is not None:
            shown = [c for c, _label in self._details_columns if c in PII_FIELDS]
            if kwargs.get("excerpts"):  # the timeline's excerpts of ticket messages
                shown.append("ticket_message.body")
            action, object_id, detail = "customer.view", model.id, ""
        elif template in (self.edit_template, self.edit_modal_template) and model is not None:
            if request.method != "GET":
                # A form shown again after a refused or failed save holds what this person just
                # typed, and its GET was audited; auditing again would fail while the database
                # is busy, and lose what they typed.
                return
            shown, action, object_id, detail = list(PII_FIELDS), "customer.view", model.id, "edit form"
        else:
            return
        with self.unit_of_work() as uow:
            uow.audit(action, "customer", object_id, shown, detail=detail)
