"""A staff member's own account: change password, choose the interface language."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user
from wtforms import PasswordField, SelectField, SubmitField, ValidationError
from wtforms.validators import EqualTo, InputRequired

from admin.base import StaffView, flash_busy
from models.uow import WriteBusy
from models.user import (
    LANGUAGES,
    PasswordPolicyError,
    change_password,
    check_password_policy,
    set_preferences,
    timezone_names,
)
from security import CheckedForm


class PasswordForm(CheckedForm):
    current = PasswordField(_l("Current password"), validators=[InputRequired()])
    new = PasswordField(_l("New password"), validators=[InputRequired()])
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[InputRequired(), EqualTo("new", message=_l("The two passwords differ."))],
    )
    submit_password = SubmitField(_l("Change password"))

    def validate_current(self, field) -> None:
        if not current_user.check_password(field.data):
            raise ValidationError(str(_l("That is not your current password.")))

    def validate_new(self, field) -> None:
        try:
            check_password_policy(field.data, current_user.email)
        except PasswordPolicyError as exc:
            raise ValidationError(str(exc)) from None


class PreferencesForm(CheckedForm):
    language = SelectField(
        _l("Interface language"),
        choices=[("", _l("Browser default"))] + list(LANGUAGES.items()),
    )
    timezone = SelectField(_l("Time zone"))
    submit_language = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = [("", _l("Panel default"))] + [(z, z) for z in timezone_names()]


class AccountView(StaffView):
    right = "dashboard.view"

    def is_visible(self) -> bool:
        return False  # reached from the user menu, not the main menu

    @expose("/", methods=("GET", "POST"))
    def index(self):
        password_form = PasswordForm(prefix="pw")
        language_form = PreferencesForm(
            prefix="lang", language=current_user.language or "", timezone=current_user.timezone or ""
        )
        user = current_user._get_current_object()
        try:
            if password_form.submit_password.data and password_form.validate_on_submit():
                with self.unit_of_work():
                    change_password(user, password_form.new.data)
                login_user(user)  # this browser continues under the new session version
                flash(_("Your password was changed. Other sessions were signed out."), "success")
                return redirect(url_for(".index"))
            if language_form.submit_language.data and language_form.validate_on_submit():
                with self.unit_of_work():
                    set_preferences(user, language_form.language.data, language_form.timezone.data)
                flash(_("Preferences saved."), "success")
                return redirect(url_for(".index"))
        except WriteBusy:
            flash_busy()  # the forms are shown again with what was chosen
        return self.render("admin/account.html", password_form=password_form, language_form=language_form)
