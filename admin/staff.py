"""Staff accounts, managed by admins.

Accounts are deactivated, never deleted: the audit log points at them.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, SelectField, ValidationError
from wtforms.validators import Email, InputRequired, Optional

from admin.base import StaffModelView
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
    column_list = ["email", "display_name", "role", "language", "active", "last_login_at", "created_at"]
    column_labels = {
        "email": _l("Email"),
        "display_name": _l("Name"),
        "role": _l("Role"),
        "language": _l("Language"),
        "active": _l("Active"),
        "last_login_at": _l("Last sign-in"),
        "created_at": _l("Created"),
    }
    column_formatters = {"role": role_label}
    column_formatters_export = {"role": role_label}
    column_searchable_list = ["email", "display_name"]
    column_filters = ["role", "active"]
    column_sortable_list = ["email", "role", "active", "last_login_at", "created_at"]
    form_columns = ["email", "display_name", "role", "language", "active", "new_password"]
    form_overrides = {"role": SelectField, "language": SelectField}
    form_args = {
        "email": {"validators": [InputRequired(), Email()], "label": _l("Email")},
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
