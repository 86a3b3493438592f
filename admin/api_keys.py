"""API keys for integrations (Settings → API keys): issued once, listed without their secret, revoked."""

from __future__ import annotations

from flask import flash
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from admin.base import StaffModelView, as_code, flash_busy
from models import db
from models.api_key import SCOPES, ApiKey, create_api_key, revoke
from models.labels import label
from models.uow import WriteBusy
from security import CheckedForm


class ApiKeyForm(CheckedForm):
    name = StringField(_l("Integration"), validators=[DataRequired(), Length(max=100)])
    source = StringField(
        _l("Source"),
        validators=[DataRequired(), Length(max=32)],
        description=_l("Short name, e.g. pos or webshop; orders are unique per source."),
    )
    scopes = SelectMultipleField(_l("Scopes"), choices=list(SCOPES.items()), validators=[DataRequired()])


def scope_labels(view, context, model: ApiKey, name: str) -> str:
    """What the key may do, in words."""
    return "; ".join(label(SCOPES, scope) for scope in sorted(model.scope_set))


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
    column_formatters = {"source": as_code, "scopes": scope_labels}
    column_formatters_export: dict = {}
    empty_message = _l("No API keys yet.")
    empty_hint = _l("Issue a key for each shop or till that posts purchases.")
    list_template = "admin/api_key_list.html"

    @expose("/issue", methods=("GET", "POST"))
    def issue(self):
        form = ApiKeyForm()
        if form.validate_on_submit():
            try:
                with self.unit_of_work(keep_state=True):
                    key, text = create_api_key(form.name.data, form.source.data.strip(), form.scopes.data)
            except ValueError as exc:
                form.source.errors.append(str(exc))
            except WriteBusy:
                flash_busy()  # the form is shown again with what was typed
            else:
                return self.render("admin/api_key_issued.html", key=key, text=text)
        return self.render("admin/api_key_form.html", form=form)

    @action("revoke", _l("Revoke"), _l("Revoke the selected keys? Integrations using them stop working."))
    def action_revoke(self, ids):
        try:
            with self.unit_of_work():
                for key in db.session.scalars(db.select(ApiKey).where(ApiKey.id.in_([int(i) for i in ids]))):
                    revoke(key)
        except WriteBusy:
            flash_busy()
            return
        flash(_("Keys revoked."), "success")
