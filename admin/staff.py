"""Staff accounts, managed by admins.

Accounts are deactivated, never deleted: the audit log points at them.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import flash, g
from flask_admin.actions import action
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from wtforms import PasswordField, SelectField, ValidationError
from wtforms.validators import InputRequired, Length, Optional

from admin.base import StaffModelView, flash_busy
from admin.fields import valid_staff_email
from models import db
from models.two_factor import reset_two_factor, users_with_two_factor
from models.uow import WriteBusy
from models.user import (
    LANGUAGES,
    ROLE_LABELS,
    PasswordPolicyError,
    StaffUser,
    check_password_policy,
    prepare_staff_account,
)


def role_label(view, context, model: StaffUser, name: str):
    return ROLE_LABELS.get(model.role, model.role)


def two_factor_label(view, context, model: StaffUser, name: str) -> str:
    """On or off; the accounts of a list page are looked up together, once per request."""
    known: dict[int, bool] = g.setdefault("staff_two_factor", {})
    if model.id not in known:
        rows = (context.get("data") if context is not None else None) or [model]
        ids = {row.id for row in rows} | {model.id}
        enrolled = users_with_two_factor(ids)
        known.update({i: i in enrolled for i in ids})
    return str(_l("On") if known[model.id] else _l("Off"))


def password_meets_policy(form, field) -> None:
    """A new password, when given, must pass the password policy."""
    if field.data:
        try:
            check_password_policy(field.data, form.email.data)
        except PasswordPolicyError as exc:
            raise ValidationError(str(exc)) from None


class StaffUserView(StaffModelView):
    right = "staff.manage"
    audit_type = "staff"
    can_delete = False
    column_list = [
        "email",
        "display_name",
        "role",
        "two_factor",
        "language",
        "active",
        "last_login_at",
        "created_at",
    ]
    column_labels = {
        "email": _l("Email"),
        "display_name": _l("Name"),
        "role": _l("Role"),
        "two_factor": _l("Two-factor"),
        "language": _l("Language"),
        "active": _l("Active"),
        "last_login_at": _l("Last sign-in"),
        "created_at": _l("Created"),
    }
    column_formatters = {"role": role_label, "two_factor": two_factor_label}
    column_formatters_export = {"role": role_label, "two_factor": two_factor_label}
    column_searchable_list = ["email", "display_name"]
    column_filters = ["role", "active"]
    column_sortable_list = ["email", "role", "active", "last_login_at", "created_at"]
    form_columns = ["email", "display_name", "role", "language", "active", "new_password"]
    form_overrides = {"role": SelectField, "language": SelectField}
    form_args = {
        "email": {"validators": [InputRequired(), Length(max=254), valid_staff_email], "label": _l("Email")},
        "display_name": {"label": _l("Name")},
        "role": {"choices": [(str(r), label) for r, label in ROLE_LABELS.items()], "label": _l("Role")},
        "language": {
            "choices": [("", _l("Browser default"))] + list(LANGUAGES.items()),
            "label": _l("Language"),
        },
        "active": {"label": _l("Active")},
    }
    form_extra_fields = {
        "new_password": PasswordField(
            _l("New password"),
            validators=[Optional(), password_meets_policy],
            description=_l("At least 12 characters. Leave empty to keep the current password."),
        )
    }

    def on_model_change(self, form, model: StaffUser, is_created: bool) -> None:
        try:
            prepare_staff_account(model, form.new_password.data, is_created)
        except ValueError as exc:  # the password policy, or the last active admin
            raise ValidationError(str(exc)) from None
        super().on_model_change(form, model, is_created)

    @action(
        "reset_two_factor",
        _l("Reset two-factor sign-in"),
        _l(
            "Remove the two-factor sign-in of the selected accounts and sign them out? "
            "They set it up again at their next sign-in if their role requires it."
        ),
    )
    def action_reset_two_factor(self, ids: t.Sequence[str]) -> None:
        """Admins reset a member of staff's two-factor sign-in (each reset audited)."""
        try:
            keys = [int(i) for i in ids]
        except ValueError:
            flash(str(_l("Nothing was selected.")), "error")
            return
        try:
            with self.unit_of_work():
                users = list(db.session.scalars(sa.select(StaffUser).where(StaffUser.id.in_(keys))))
                for user in users:
                    reset_two_factor(user)
        except WriteBusy:
            flash_busy()
            return
        flash(
            ngettext(
                "Two-factor sign-in was reset for %(num)d account.",
                "Two-factor sign-in was reset for %(num)d accounts.",
                len(users),
            ),
            "success",
        )
