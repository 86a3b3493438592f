"""Loyalty screens: purchases, the ledger, rewards, redemptions, tiers, rules, API keys, imports."""

from __future__ import annotations

from decimal import Decimal

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import (
    BooleanField,
    DecimalField,
    FileField,
    SelectField,
    SelectMultipleField,
    StringField,
    ValidationError,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from admin.base import StaffModelView, StaffView
from admin.fields import known_customer, member_no_of
from models import db
from models.api_key import SCOPES, create_api_key, revoke
from models.audit import record_event
from models.customer import find_customer_id
from models.loyalty import (
    ENTRY_LABELS,
    PURCHASE_CHANNELS,
    LoyaltyError,
    NewPurchase,
    record_purchase,
    refund_purchase,
)
from models.purchase_import import import_purchases
from models.rewards import REDEMPTION_LABELS, Redemption, cancel_redemption, mark_used
from security import CheckedForm


def purchase_channel(view, context, model, name):
    return PURCHASE_CHANNELS.get(model.channel, model.channel)


def entry_kind(view, context, model, name):
    return ENTRY_LABELS.get(model.kind, model.kind)


def redemption_status(view, context, model, name):
    return REDEMPTION_LABELS.get(model.status, model.status)


class PurchaseView(StaffModelView):
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
        from flask import current_app

        spec = NewPurchase(
            find_customer_id(form.customer_lookup.data),
            "admin",
            form.order_ref.data.strip(),
            form.amount.data,
            current_app.config["LOYALTY_CURRENCY"],
            form.channel.data,
        )
        try:
            result = record_purchase(spec, actor=current_user.email)
        except LoyaltyError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return False
        record_event("purchase.create", "purchase", result.purchase.id, ["amount", "order_ref"])
        db.session.commit()
        if not result.created:
            flash(_("That order was recorded before; nothing changed."), "warning")
        return result.purchase

    @action("refund", _l("Refund"), _l("Refund the selected purchases and reverse their points?"))
    def action_refund(self, ids):
        from models.loyalty import Purchase

        done = 0
        for purchase_id in ids:
            purchase = db.session.get(Purchase, int(purchase_id))
            if purchase is not None and purchase.status == "completed":
                refund_purchase(purchase.source, purchase.order_ref, actor=current_user.email)
                record_event("purchase.refund", "purchase", purchase.id, ["status"])
                db.session.commit()
                done += 1
        flash(_("%(n)d purchases refunded.", n=done), "success")


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
    column_formatters = {"customer": member_no_of, "kind": entry_kind}
    column_formatters_export = {"customer": member_no_of, "kind": entry_kind}
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
        from models.loyalty import tiers

        form.min_tier.choices = [("", _l("Any tier"))] + [(t.code, str(t)) for t in tiers()]
        return form

    def on_model_change(self, form, model, is_created):
        model.min_tier = model.min_tier or None
        if model.starts_at and model.ends_at and model.ends_at <= model.starts_at:
            raise ValidationError(_("The end must come after the start."))
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
        for redemption in db.session.query(Redemption).filter(Redemption.id.in_([int(i) for i in ids])):
            if redemption.status == "issued":
                mark_used(redemption)
                record_event("redemption.use", "redemption", redemption.id, ["status"])
                used += 1
        db.session.commit()
        flash(_("%(n)d of %(total)d coupons marked used.", n=used, total=len(ids)), "success")

    @action(
        "cancel", _l("Cancel and refund points"), _l("Cancel the selected coupons and give the points back?")
    )
    def action_cancel(self, ids):
        cancelled = 0
        for redemption_id in ids:
            try:
                cancel_redemption(int(redemption_id), actor=current_user.email)
                record_event("redemption.cancel", "redemption", redemption_id, ["status"])
                db.session.commit()
                cancelled += 1
            except LoyaltyError as exc:
                db.session.rollback()
                flash(str(exc), "error")
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
        if model.ends_at <= model.starts_at:
            raise ValidationError(_("The end must come after the start."))
        super().on_model_change(form, model, is_created)


class ApiKeyForm(CheckedForm):
    name = StringField(_l("Integration"), validators=[DataRequired(), Length(max=100)])
    source = StringField(
        _l("Source"),
        validators=[DataRequired(), Length(max=32)],
        description=_l("Short name, e.g. pos or webshop; orders are unique per source."),
    )
    scopes = SelectMultipleField(_l("Scopes"), choices=list(SCOPES.items()), validators=[DataRequired()])


class ApiKeyView(StaffModelView):
    right = "loyalty.configure"
    audit_type = "api_key"
    can_create = can_edit = can_delete = False
    column_list = ["name", "source", "lookup", "scopes", "created_at", "revoked_at"]
    column_labels = {
        "name": _l("Integration"),
        "source": _l("Source"),
        "lookup": _l("Key starts with"),
        "scopes": _l("Scopes"),
        "created_at": _l("Created"),
        "revoked_at": _l("Revoked"),
    }
    list_template = "admin/api_key_list.html"

    @expose("/issue", methods=("GET", "POST"))
    def issue(self):
        form = ApiKeyForm()
        if form.validate_on_submit():
            try:
                key, text = create_api_key(form.name.data, form.source.data.strip(), form.scopes.data)
            except ValueError as exc:
                form.source.errors.append(str(exc))
            else:
                db.session.flush()
                record_event("api_key.create", "api_key", key.id, ["name", "scopes"])
                db.session.commit()
                return self.render("admin/api_key_issued.html", key=key, text=text)
        return self.render("admin/api_key_form.html", form=form)

    @action("revoke", _l("Revoke"), _l("Revoke the selected keys? Integrations using them stop working."))
    def action_revoke(self, ids):
        from models.api_key import ApiKey

        for key in db.session.query(ApiKey).filter(ApiKey.id.in_([int(i) for i in ids])):
            revoke(key)
            record_event("api_key.revoke", "api_key", key.id, ["revoked_at"])
        db.session.commit()
        flash(_("Keys revoked."), "success")


class ImportForm(CheckedForm):
    file = FileField(_l("CSV file"), validators=[DataRequired()])
    source = StringField(_l("Source"), default="csv", validators=[DataRequired(), Length(max=32)])
    dry_run = BooleanField(_l("Check only (dry run)"), default=True)


class PurchaseImportView(StaffView):
    right = "loyalty.manage"

    @expose("/", methods=("GET", "POST"))
    def index(self):
        from flask import current_app

        form, report = ImportForm(), None
        if form.validate_on_submit():
            upload = request.files.get(form.file.name)
            raw = upload.read() if upload else b""
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                flash(_("The file must be UTF-8 text."), "error")
                return redirect(url_for(".index"))
            report = import_purchases(
                text,
                form.source.data.strip(),
                current_app.config["LOYALTY_CURRENCY"],
                form.dry_run.data,
                actor=current_user.email,
            )
            if report.ok and not form.dry_run.data:
                record_event(
                    "purchase.import",
                    "purchase",
                    None,
                    ["amount", "order_ref"],
                    detail=f"rows={report.recorded}",
                )
                db.session.commit()
        return self.render("admin/purchase_import.html", form=form, report=report)
