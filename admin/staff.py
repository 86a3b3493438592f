"""Staff accounts, managed by admins.

Accounts are deactivated, never deleted: the audit log points at them.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import flash, g, make_response, url_for
from flask_admin.actions import action
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user
from wtforms import PasswordField, SelectField, ValidationError
from wtforms.validators import InputRequired, Length, Optional, StopValidation

from admin.base import StaffModelView, flash_busy
from admin.fields import valid_staff_email
from models import db
from models.password_reset import LINK_MINUTES, PasswordResetError, issue_password_reset
from models.two_factor import reset_two_factor, users_with_two_factor
from models.uow import WriteBusy
from models.user import (
    LANGUAGES,
    RIGHTS,
    ROLE_LABELS,
    PasswordPolicyError,
    Role,
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


class Required(InputRequired):
    """A field that must be filled, with its message translated when shown.

    (Flask-Admin shows a field's errors only when they are plain strings, not lazy ones.)
    """

    def __call__(self, form, field) -> None:
        if not field.data:
            raise StopValidation(str(self.message))


def roles_least_first() -> list[Role]:
    """The roles ordered by how many rights they hold, the fewest first."""
    held = {role: sum(role in holders for holders in RIGHTS.values()) for role in Role}
    return sorted(Role, key=lambda role: held[role])


ROLE_HELP = _l(
    "Analyst: figures and survey results, personal data masked. Agent: customers, tickets, "
    "purchases and invitations. Manager: also exports, erasure, points and rewards. "
    "Administrator: everything, including staff accounts and the audit log."
)
NEW_PASSWORD_HELP = _l("At least 12 characters. Leave empty to keep the current password.")
INITIAL_PASSWORD_HELP = _l(
    "At least 12 characters, not a common password. Hand it over in person; they can change it "
    "on their account page. Or choose any long password here and make them a password reset "
    "link from the Staff list."
)


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
        "role": {
            "choices": [("", _l("Choose a role…"))] + [(str(r), ROLE_LABELS[r]) for r in roles_least_first()],
            "label": _l("Role"),
            # The empty first option is no choice: the admin picks the role.
            "validators": [Required(_l("Choose the role of this account."))],
            "description": ROLE_HELP,
        },
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
            description=NEW_PASSWORD_HELP,
        )
    }

    def create_form(self, obj=None):
        """A new account: the password is its first one, and it is required."""
        form = super().create_form(obj)
        form.new_password.label.text = _l("Initial password")
        form.new_password.description = INITIAL_PASSWORD_HELP
        form.new_password.validators = [
            Required(_l("A new account needs a password.")),
            password_meets_policy,
        ]
        form.new_password.flags.required = True
        return form

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

    @action(
        "reset_link",
        _l("Make a password reset link"),
        _l("Make a password reset link for the selected account? Any earlier link of theirs stops working."),
    )
    def action_reset_link(self, ids: t.Sequence[str]):
        """Admins make a single-use, expiring link for one account to set a new password; shown once."""
        if len(ids) != 1 or not str(ids[0]).isdigit():
            flash(str(_l("Select exactly one account to make a password reset link for.")), "error")
            return None
        try:
            with self.unit_of_work():
                user = db.session.get(StaffUser, int(ids[0]))
                if user is None:
                    flash(str(_l("Nothing was selected.")), "error")
                    return None
                admin = db.session.get(StaffUser, current_user.id)
                reset, token = issue_password_reset(user, "admin", created_by=admin)
                email, expires_at = user.email, reset.expires_at
        except PasswordResetError as exc:
            flash(str(exc), "error")
            return None
        except WriteBusy:
            flash_busy()
            return None
        link = url_for("staff_auth.reset_with_link", token=token, _external=True)
        page = self.render(
            "admin/staff_reset_link.html", email=email, link=link, expires_at=expires_at, minutes=LINK_MINUTES
        )
        response = make_response(page)
        response.headers["Cache-Control"] = "no-store"
        return response
