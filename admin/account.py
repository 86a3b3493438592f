"""A staff member's own account: change password, choose the interface language, see and end sessions."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_user
from wtforms import PasswordField, SelectField, SubmitField, ValidationError
from wtforms.validators import EqualTo, InputRequired

from admin.base import StaffView, flash_busy, local_time
from admin.session_hooks import current_session_id, idle_limit_text, lifetime_limit_text, session_limits
from models import utcnow
from models.staff_session import StaffSession, active_sessions, end_other_sessions, end_session_of
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


class SessionForm(CheckedForm):
    """The CSRF-checked form behind each "Sign out" button of the session list."""

    submit_end = SubmitField(_l("Sign out"))


def device_label(record: StaffSession) -> str:
    """The browser and system, e.g. "Chrome on Linux", or what of it the User-Agent told."""
    if record.browser and record.system:
        return _("%(browser)s on %(system)s", browser=record.browser, system=record.system)
    if record.browser or record.system:
        return record.browser or record.system
    return _("Unknown browser")


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
                return self._continue_after_password_change(user)
            if language_form.submit_language.data and language_form.validate_on_submit():
                with self.unit_of_work():
                    set_preferences(user, language_form.language.data, language_form.timezone.data)
                flash(_("Preferences saved."), "success")
                return redirect(url_for(".index"))
        except WriteBusy:
            flash_busy()  # the forms are shown again with what was chosen
        return self.render(
            "admin/account.html",
            password_form=password_form,
            language_form=language_form,
            session_form=SessionForm(prefix="sessions"),
            sessions=self._session_rows(),
            idle_limit=idle_limit_text(session_limits()),
            lifetime_limit=lifetime_limit_text(session_limits()),
        )

    def _continue_after_password_change(self, user):
        """This browser goes on under a new session; every other one ended with the old version."""
        try:
            login_user(user)
        except WriteBusy:
            # The password is changed, but this browser's new session could not be stored.
            flash(_("Your password was changed. Please sign in again with the new password."), "warning")
            return redirect(url_for("staff_auth.login"))
        flash(_("Your password was changed. Other sessions were signed out."), "success")
        return redirect(url_for(".index"))

    def _session_rows(self) -> list[dict]:
        """This member of staff's working sessions, for the list: this browser's first."""
        this = current_session_id()
        rows = [
            {
                "id": record.id,
                "device": device_label(record),
                "ip": record.ip or "",
                "started": local_time(self, record.created_at, "created_at"),
                "last_seen": local_time(self, record.last_seen_at, "last_seen_at"),
                "current": record.id == this,
            }
            for record in active_sessions(current_user._get_current_object(), utcnow(), session_limits())
        ]
        return sorted(rows, key=lambda row: not row["current"])

    @expose("/sessions/<int:session_id>/end", methods=("POST",))
    def end_session(self, session_id: int):
        """Sign out one other session of this member of staff."""
        SessionForm(prefix="sessions").validate_on_submit()  # a missing or wrong CSRF token: 400
        if session_id == current_session_id():
            flash(_("This is the session you are using; use Sign out in the menu to end it."), "info")
            return redirect(url_for(".index"))
        user = current_user._get_current_object()
        try:
            with self.unit_of_work():
                ended = end_session_of(user, session_id, current_session_id(), utcnow(), session_limits())
        except WriteBusy:
            flash_busy()
            return redirect(url_for(".index"))
        if ended:
            flash(_("That session was signed out."), "success")
        else:
            flash(_("That session had already ended."), "info")
        return redirect(url_for(".index"))

    @expose("/sessions/end-others", methods=("POST",))
    def end_others(self):
        """Sign out every session of this member of staff but this one."""
        SessionForm(prefix="sessions").validate_on_submit()
        user = current_user._get_current_object()
        try:
            with self.unit_of_work():
                ended = end_other_sessions(user, current_session_id(), utcnow(), session_limits())
        except WriteBusy:
            flash_busy()
            return redirect(url_for(".index"))
        flash(
            ngettext(
                "%(num)d other session was signed out.", "%(num)d other sessions were signed out.", len(ended)
            ),
            "success",
        )
        return redirect(url_for(".index"))
