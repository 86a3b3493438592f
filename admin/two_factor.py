"""A member of staff's own two-factor sign-in: enrol, recovery codes, trusted browsers, turn off."""

from __future__ import annotations

import typing as t

import segno
from flask import flash, make_response, redirect, request, session, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from admin.base import StaffView, flash_busy
from models.sign_in_guard import Attempt, record_failure, wait_seconds
from models.two_factor import (
    TwoFactorError,
    accept_totp,
    disable_two_factor,
    enable_two_factor,
    forget_devices,
    new_secret,
    open_candidate,
    provisioning_uri,
    recovery_codes_left,
    regenerate_recovery_codes,
    seal_candidate,
    trusted_device_count,
    two_factor_of,
    two_factor_required,
)
from models.uow import WriteBusy
from models.user import StaffUser
from security import CheckedForm

# The secret offered for enrolment, sealed, until the member of staff confirms it with a code.
CANDIDATE_KEY = "two_factor_candidate"


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code, drawn here (no outside service sees the secret)."""
    title = escape(_("QR code for your authenticator app"))
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, border=4, title=str(title)))


def grouped(secret: str) -> str:
    """A secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


class PasswordOrCode(CheckedForm):
    """Confirms a change: the current password, or a code the authenticator app shows now."""

    confirm = PasswordField(
        _l("Your password or a code from your app"),
        validators=[InputRequired(), Length(max=256)],
    )


class EnrolSelfForm(CheckedForm):
    code = StringField(_l("Code from the app"), validators=[InputRequired(), Length(max=32)])
    password = PasswordField(_l("Your password"), validators=[InputRequired(), Length(max=256)])
    submit_enrol = SubmitField(_l("Turn on two-factor sign-in"))


class RecoveryForm(PasswordOrCode):
    submit_codes = SubmitField(_l("Make new recovery codes"))


class DisableForm(PasswordOrCode):
    submit_off = SubmitField(_l("Turn off two-factor sign-in"))


class ForgetDevicesForm(CheckedForm):
    submit_forget = SubmitField(_l("Forget trusted browsers"))


class NotConfirmed(Exception):
    """The password or code given to confirm a change was wrong; nothing is changed."""


class TwoFactorView(StaffView):
    right = "dashboard.view"

    def is_visible(self) -> bool:
        return False  # reached from the account menu, not the main menu

    def _candidate(self, user: StaffUser) -> str:
        """The secret offered to this member of staff (the same one until they enrol)."""
        secret = open_candidate(user, session.get(CANDIDATE_KEY))
        if secret is None:
            secret = new_secret()
            session[CANDIDATE_KEY] = seal_candidate(user, secret)
        return secret

    def _confirm(self, user: StaffUser, value: str) -> None:
        """Raise NotConfirmed unless `value` is the password or a current code (inside the unit of work).

        Wrong answers count against the account's sign-in throttle, like a wrong password.
        """
        if user.check_password(value) or accept_totp(user, value):
            return
        raise NotConfirmed

    def _refused(self, user: StaffUser) -> None:
        """Count a wrong confirmation against the account's sign-in throttle."""
        with self.unit_of_work():
            record_failure(Attempt(request.remote_addr, user.email))
        flash(_("That is neither your password nor a current code."), "error")

    @expose("/", methods=("GET", "POST"))
    def index(self):
        user = current_user._get_current_object()
        forms = {
            "enrol": EnrolSelfForm(prefix="enrol"),
            "codes": RecoveryForm(prefix="codes"),
            "off": DisableForm(prefix="off"),
            "forget": ForgetDevicesForm(prefix="forget"),
        }
        shown_codes: list[str] | None = None
        status = 200
        if request.method == "POST":
            if wait_seconds(Attempt(request.remote_addr, user.email)):
                flash(_("Too many failed attempts. Please wait a little and try again."), "error")
                status = 429
            else:
                try:
                    answer = self._handle(user, forms)
                except WriteBusy:
                    flash_busy()
                    answer = None
                if isinstance(answer, list):
                    shown_codes = answer
                elif answer is not None:
                    return answer
        return self._page(user, forms, shown_codes, status)

    def _handle(self, user: StaffUser, forms: dict[str, t.Any]) -> t.Any:
        """Run the submitted form's change; a list of recovery codes to show, a redirect, or None."""
        try:
            if forms["enrol"].submit_enrol.data and forms["enrol"].validate_on_submit():
                return self._enrol(user, forms["enrol"])
            if forms["codes"].submit_codes.data and forms["codes"].validate_on_submit():
                with self.unit_of_work():
                    self._confirm(user, forms["codes"].confirm.data)
                    codes = regenerate_recovery_codes(user)
                flash(_("New recovery codes were made; the old ones no longer work."), "success")
                return codes
            if forms["off"].submit_off.data and forms["off"].validate_on_submit():
                with self.unit_of_work():
                    self._confirm(user, forms["off"].confirm.data)
                    disable_two_factor(user)
                flash(_("Two-factor sign-in is off."), "success")
                return redirect(url_for(".index"))
            if forms["forget"].submit_forget.data and forms["forget"].validate_on_submit():
                with self.unit_of_work():
                    count = forget_devices(user)
                flash(_("Trusted browsers forgotten: %(n)d.", n=count), "success")
                return redirect(url_for(".index"))
        except NotConfirmed:
            self._refused(user)
        except TwoFactorError:
            flash(_("That change is not possible for your account."), "error")
        return None

    def _enrol(self, user: StaffUser, form: EnrolSelfForm) -> list[str] | None:
        if not user.check_password(form.password.data):
            self._refused(user)
            return None
        with self.unit_of_work():
            codes = enable_two_factor(user, self._candidate(user), form.code.data)
        if codes is None:
            form.code.errors = [_("That is not the code the app shows now. Check the app and try again.")]
            return None
        session.pop(CANDIDATE_KEY, None)
        flash(_("Two-factor sign-in is on."), "success")
        return codes

    def _page(self, user: StaffUser, forms: dict[str, t.Any], codes: list[str] | None, status: int):
        two_factor = two_factor_of(user)
        context: dict[str, t.Any] = {
            "forms": forms,
            "two_factor": two_factor,
            "required": two_factor_required(user),
            "codes": codes,
        }
        if two_factor is None:
            secret = self._candidate(user)
            context |= {"secret": grouped(secret), "qr": qr_svg(provisioning_uri(secret, user.email))}
        else:
            context |= {"codes_left": recovery_codes_left(user), "devices": trusted_device_count(user)}
        response = make_response(self.render("admin/two_factor.html", **context), status)
        response.headers["Cache-Control"] = "no-store"  # a secret or recovery codes may be on it
        return response
