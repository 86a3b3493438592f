"""Loyalty screens: purchases, the ledger, rewards, redemptions, tiers, rules, imports."""

from __future__ import annotations

from decimal import Decimal

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, DecimalField, FileField, SelectField, StringField, ValidationError
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from admin.base import StaffModelView, StaffView, flash_busy
from admin.fields import OpensFromCustomerPage, known_customer, member_no_of
from models import db
from models.customer import find_customer_id
from models.loyalty.imports import check_import, record_import
from models.loyalty.ledger import ENTRY_LABELS, PointsEntry, reason_label
from models.loyalty.programme import DatedWindow, LoyaltyError, tiers
from models.loyalty.purchases import (
    PURCHASE_CHANNELS,
    NewPurchase,
    Purchase,
    record_purchase,
    refund_purchase,
)
from models.loyalty.rewards import REDEMPTION_LABELS, Redemption, cancel_redemption, mark_used
from models.uow import WriteBusy
from security import CheckedForm


def purchase_channel(view, context, model, name):
    return PURCHASE_CHANNELS.get(model.channel, model.channel)


def entry_kind(view, context, model, name):
    return ENTRY_LABELS.get(model.kind, model.kind)


def redemption_status(view, context, model, name):
    return REDEMPTION_LABELS.get(model.status, model.status)


def check_window(model: DatedWindow) -> None:
    """The model's window rule, as a form error (Flask-Admin shows it and keeps what was typed)."""
    try:
        model.check_window()
    except LoyaltyError as exc:
        raise ValidationError(str(exc)) from None


class PurchaseView(OpensFromCustomerPage):
    right = "loyalty.view"
    endpoint_rights = {
        "create_view": "loyalty.purchase",
        "action_view": "loyalty.manage",
        "edit_view": "loyalty.configure",
        "delete_view": "loyalty.configure",
        "export": "loyalty.manage",
    }
    audit_type = "purchase"
    can_edit = False
    can_delete = False
    column_list = [
        "purchased_at",
        "order_ref",
        "source",
        "customer",
        "amount",
        "currency",
        "channel",
        "points",
        "status",
    ]
    column_labels = {
        "purchased_at": _l("Time"),
        "order_ref": _l("Order no."),
        "source": _l("Source"),
        "customer": _l("Customer"),
        "amount": _l("Amount"),
        "currency": _l("Currency"),
        "channel": _l("Channel"),
        "points": _l("Points"),
        "status": _l("Status"),
    }
    column_formatters = {"customer": member_no_of, "channel": purchase_channel}
    column_formatters_export = {"customer": member_no_of, "channel": purchase_channel}
    column_default_sort = ("purchased_at", True)
    column_searchable_list = ["order_ref", "source"]
    column_filters = ["purchased_at", "source", "channel", "status"]
    form_columns = ["customer_lookup", "order_ref", "amount", "channel"]
    form_extra_fields = {
        "customer_lookup": StringField(
            _l("Customer"),
            validators=[DataRequired(), known_customer],
            description=_l("Exact email, phone or member number."),
        ),
        "order_ref": StringField(_l("Order no."), validators=[DataRequired(), Length(max=64)]),
        "amount": DecimalField(
            _l("Amount"), places=2, validators=[InputRequired(), NumberRange(min=Decimal("0.01"))]
        ),
        "channel": SelectField(
            _l("Channel"),
            choices=list(PURCHASE_CHANNELS.items()),
        ),
    }

    def create_model(self, form):
        customer_id = find_customer_id(form.customer_lookup.data)
        if customer_id is None:  # the form's validator found the customer a moment ago
            flash(_("No such customer."), "error")
            return False
        spec = NewPurchase(
            customer_id,
            "admin",
            form.order_ref.data.strip(),
            form.amount.data,
            current_app.config["LOYALTY_CURRENCY"],
            form.channel.data,
        )
        try:
            with self.unit_of_work(keep_state=True):
                result = record_purchase(spec)
        except LoyaltyError as exc:
            flash(str(exc), "error")
            return False
        except WriteBusy:
            flash_busy()  # False: the form is shown again with what was typed
            return False
        if not result.created:
            flash(_("That order was recorded before; nothing changed."), "warning")
        return result.purchase

    @action("refund", _l("Refund"), _l("Refund the selected purchases and reverse their points?"))
    def action_refund(self, ids):
        done = 0
        try:
            with self.unit_of_work():
                query = db.select(Purchase).where(Purchase.id.in_([int(i) for i in ids]))
                for purchase in db.session.scalars(query).all():
                    if purchase.status == "completed":
                        refund_purchase(purchase.source, purchase.order_ref)
                        done += 1
        except WriteBusy:
            flash_busy()
            return
        flash(_("%(n)d purchases refunded.", n=done), "success")


def ledger_reason(view, context, model: PointsEntry, name: str) -> str:
    return reason_label(model.reason)


class LedgerView(StaffModelView):
    """The points ledger: read-only for everyone, as the database enforces."""

    right = "loyalty.view"
    endpoint_rights = {"export": "loyalty.manage"}
    can_create = can_edit = can_delete = False
    can_export = True
    action_disallowed_list = ["delete"]
    column_list = [
        "created_at",
        "customer",
        "kind",
        "points",
        "balance_after",
        "reason",
        "reference",
        "actor",
        "expires_at",
    ]
    column_labels = {
        "created_at": _l("Time"),
        "customer": _l("Customer"),
        "kind": _l("Kind"),
        "points": _l("Points"),
        "balance_after": _l("Balance after"),
        "reason": _l("Reason"),
        "reference": _l("Linked to"),
        "actor": _l("By"),
        "expires_at": _l("Expires"),
    }
    column_formatters = {"customer": member_no_of, "kind": entry_kind, "reason": ledger_reason}
    column_formatters_export = column_formatters
    column_default_sort = ("id", True)
    column_filters = ["kind", "created_at", "customer_id"]
    column_searchable_list = ["reference", "reason"]


class RewardView(StaffModelView):
    right = "loyalty.view"
    endpoint_rights = {
        "create_view": "loyalty.manage",
        "edit_view": "loyalty.manage",
        "delete_view": "loyalty.manage",
        "action_view": "loyalty.manage",
        "export": "loyalty.manage",
    }
    audit_type = "reward"
    can_delete = False  # redemptions point at rewards: deactivate instead
    column_list = ["name_en", "name_zh", "points_cost", "stock", "starts_at", "ends_at", "min_tier", "active"]
    column_labels = {
        "name_en": _l("English name"),
        "name_zh": _l("Chinese name"),
        "points_cost": _l("Points"),
        "stock": _l("Stock (empty: unlimited)"),
        "starts_at": _l("From"),
        "ends_at": _l("Until"),
        "min_tier": _l("Minimum tier"),
        "active": _l("Active"),
        "description": _l("Description"),
    }
    form_columns = [
        "name_en",
        "name_zh",
        "description",
        "points_cost",
        "stock",
        "starts_at",
        "ends_at",
        "min_tier",
        "active",
    ]
    form_args = {
        "points_cost": {"validators": [InputRequired(), NumberRange(min=1)]},
        "stock": {"validators": [Optional(), NumberRange(min=0)]},
    }
    form_overrides = {"min_tier": SelectField}

    def create_form(self, obj=None):
        return self._with_tiers(super().create_form(obj))

    def edit_form(self, obj=None):
        return self._with_tiers(super().edit_form(obj))

    @staticmethod
    def _with_tiers(form):
        form.min_tier.choices = [("", _l("Any tier"))] + [(t.code, str(t)) for t in tiers()]
        return form

    def on_model_change(self, form, model, is_created):
        model.min_tier = model.min_tier or None
        check_window(model)
        super().on_model_change(form, model, is_created)


class RedemptionView(StaffModelView):
    right = "loyalty.view"
    endpoint_rights = {"action_view": "loyalty.purchase", "export": "loyalty.manage"}
    can_create = can_edit = can_delete = False
    column_list = ["created_at", "customer", "reward", "points", "coupon_code", "status", "used_at"]
    column_labels = {
        "created_at": _l("Time"),
        "customer": _l("Customer"),
        "reward": _l("Reward"),
        "points": _l("Points"),
        "coupon_code": _l("Coupon"),
        "status": _l("Status"),
        "used_at": _l("Used"),
    }
    column_formatters = {"customer": member_no_of, "status": redemption_status}
    column_default_sort = ("created_at", True)
    column_searchable_list = ["coupon_code"]
    column_filters = ["status", "created_at"]

    action_rights = {"cancel": "loyalty.manage"}

    @action("use", _l("Mark used"), _l("Mark the selected coupons as used? This cannot be undone."))
    def action_use(self, ids):
        used = 0
        try:
            with self.unit_of_work():
                query = db.select(Redemption).where(Redemption.id.in_([int(i) for i in ids]))
                for redemption in db.session.scalars(query).all():
                    if redemption.status == "issued":
                        mark_used(redemption)
                        used += 1
        except WriteBusy:
            flash_busy()
            return
        flash(_("%(n)d of %(total)d coupons marked used.", n=used, total=len(ids)), "success")

    @action(
        "cancel", _l("Cancel and refund points"), _l("Cancel the selected coupons and give the points back?")
    )
    def action_cancel(self, ids):
        cancelled, refused = 0, []
        try:
            with self.unit_of_work():
                for redemption_id in ids:
                    try:
                        cancel_redemption(int(redemption_id))
                        cancelled += 1
                    except LoyaltyError as exc:  # refused before it changed anything: go on
                        refused.append(str(exc))
        except WriteBusy:
            flash_busy()
            return
        for message in refused:
            flash(message, "error")
        flash(
            _("%(n)d of %(total)d coupons cancelled.", n=cancelled, total=len(ids)),
            "success" if cancelled else "error",
        )


class TierView(StaffModelView):
    right = "loyalty.configure"
    audit_type = "tier"
    can_delete = False
    column_list = ["code", "name_en", "name_zh", "threshold", "multiplier"]
    column_default_sort = "threshold"
    column_labels = {
        "code": _l("Code"),
        "name_en": _l("English name"),
        "name_zh": _l("Chinese name"),
        "threshold": _l("12-month spend from"),
        "multiplier": _l("Points multiplier"),
    }
    form_args = {
        "threshold": {"validators": [InputRequired(), NumberRange(min=0)]},
        "multiplier": {"validators": [InputRequired(), NumberRange(min=Decimal("0.01"))]},
    }


class EarningRuleView(StaffModelView):
    right = "loyalty.configure"
    audit_type = "earning_rule"
    can_create = can_delete = False
    column_labels = {
        "points_per_unit": _l("Points per currency unit"),
        "rounding": _l("Rounding"),
        "minimum_amount": _l("Minimum amount"),
    }
    form_overrides = {"rounding": SelectField}
    form_args = {
        "rounding": {"choices": [("down", _l("Down")), ("nearest", _l("Nearest")), ("up", _l("Up"))]},
        "points_per_unit": {"validators": [InputRequired(), NumberRange(min=0)]},
        "minimum_amount": {"validators": [InputRequired(), NumberRange(min=0)]},
    }


class PromotionView(StaffModelView):
    right = "loyalty.manage"
    audit_type = "promotion"
    column_list = ["name", "multiplier", "starts_at", "ends_at", "active"]
    column_labels = {
        "name": _l("Promotion"),
        "multiplier": _l("Multiplier"),
        "starts_at": _l("From"),
        "ends_at": _l("Until"),
        "active": _l("Active"),
    }
    form_args = {
        "multiplier": {"validators": [InputRequired(), NumberRange(min=Decimal("0.01"))]},
        "starts_at": {"validators": [InputRequired()]},
        "ends_at": {"validators": [InputRequired()]},
    }

    def on_model_change(self, form, model, is_created):
        check_window(model)
        super().on_model_change(form, model, is_created)


class ImportForm(CheckedForm):
    file = FileField(_l("CSV file"), validators=[DataRequired()])
    source = StringField(_l("Source"), default="csv", validators=[DataRequired(), Length(max=32)])
    dry_run = BooleanField(_l("Check only (dry run)"), default=True)


class PurchaseImportView(StaffView):
    right = "loyalty.manage"

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form, report = ImportForm(), None
        if form.validate_on_submit():
            upload = request.files.get(form.file.name)
            raw = upload.read() if upload else b""
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                flash(_("The file must be UTF-8 text."), "error")
                return redirect(url_for(".index"))
            # Checking reads only: done before the write transaction, which then only records.
            checked = check_import(text, form.source.data.strip(), current_app.config["LOYALTY_CURRENCY"])
            report = checked.report
            if report.ok and not form.dry_run.data:
                try:
                    with self.unit_of_work():
                        report = record_import(checked)
                except WriteBusy:
                    flash_busy()  # the form is shown again; nothing was imported
                    report = None
        return self.render("admin/purchase_import.html", form=form, report=report)
