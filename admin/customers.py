"""The customer screens: PII shown or masked by role, exact search by blind index, audited."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import DateField, IntegerField, SelectField, StringField, TextAreaField, ValidationError
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from admin.base import StaffModelView, can_view_pii, flash_busy
from admin.fields import TAGS_HELP, choices, valid_email, valid_phone
from models import db
from models.customer import (
    CUSTOMER_LANGUAGES,
    GENDER_LABELS,
    PII_FIELDS,
    SOURCE_LABELS,
    Customer,
    CustomerMustBeKept,
    check_customer_deletable,
    contact_filter,
)
from models.loyalty.ledger import (
    ENTRY_LABELS,
    REASON_LABELS,
    account_state,
    adjust_points,
    expiring_points,
    recent_ledger,
)
from models.loyalty.programme import LoyaltyError, tiers
from models.loyalty.tiers import TierChange
from models.surveys.invitations import INVITATION_LABELS, customer_invitations
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

    def _apply_search(self, query, count_query, joins, count_joins, search):
        match = contact_filter(search)
        if match is None:
            return super()._apply_search(query, count_query, joins, count_joins, search)
        query = query.filter(match)
        if count_query is not None:
            count_query = count_query.filter(match)
        return query, count_query, joins, count_joins

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
            "tier_names": tier_names,
            "tier_changes": db.session.scalars(
                sa.select(TierChange)
                .where(TierChange.customer_id == customer.id)
                .order_by(TierChange.id.desc())
            ).all(),
            "adjust_form": AdjustPointsForm() if current_user.can("loyalty.manage") else None,
        }

    def render(self, template, **kwargs):
        """Every page that shows a customer's unmasked details leaves an audit event."""
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["loyalty"] = self.loyalty_panel(kwargs["model"])
            kwargs["survey_invitations"] = customer_invitations(kwargs["model"].id)
            kwargs["invitation_labels"] = INVITATION_LABELS
        # Render first: the audit commit expires every loaded customer, and rendering after
        # it would fetch and decrypt each row again.
        html = super().render(template, **kwargs)
        if can_view_pii():
            self._audit_disclosure(template, kwargs)
        return html

    def _audit_disclosure(self, template: str, kwargs: dict) -> None:
        model = kwargs.get("model")
        if template == self.list_template and kwargs.get("data"):
            ids = ",".join(str(m.id) for m in kwargs["data"])
            shown = [c for c, _label in self._list_columns if c in PII_FIELDS]
            object_id, detail = None, f"ids={ids}"
            action = "customer.list"
        elif template in (self.details_template, self.details_modal_template) and model is not None:
            shown = [c for c, _label in self._details_columns if c in PII_FIELDS]
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
