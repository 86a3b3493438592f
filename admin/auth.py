"""Staff sign-in and sign-out: a password step, a second-factor step, throttled and audited.

The flow: the password step (`login`); then, for an account with two-factor sign-in, the
code step (`second_factor`: a TOTP code or a recovery code), or, for an account whose role
requires it and that has none yet, the enrolment step (`enrol`). Between the steps the
browser holds only a pending state in its session (who, since when, where to go next); it
is signed in (`login_user`, once) after the last step, in a fresh session.

Failed passwords and codes are counted per address and per account in the database
(models/sign_in_guard.py), with growing delays; a browser trusted after a two-factor
sign-in (a signed cookie naming a server-side record) answers to its own count only, so
that strangers cannot lock its owner out.
"""

from __future__ import annotations

import time
import typing as t
import unicodedata
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_timedelta
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import validate_csrf
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug import Response
from wtforms import BooleanField, EmailField, PasswordField, StringField, SubmitField, ValidationError
from wtforms.validators import EqualTo, InputRequired, Length

from admin.two_factor import grouped, qr_svg
from extensions import limiter, seconds_until_allowed
from models import db
from models.password_reset import (
    LINK_MINUTES,
    PasswordResetError,
    find_password_reset,
    record_reset_request,
    reset_password,
)
from models.sign_in_guard import Attempt, record_failure, record_success, wait_seconds
from models.two_factor import (
    SecondFactor,
    TwoFactorError,
    enable_two_factor,
    has_two_factor,
    known_device,
    new_secret,
    open_candidate,
    provisioning_uri,
    recovery_codes_left,
    seal_candidate,
    touch_device,
    trust_device,
    trusted_device_days,
    two_factor_required,
    verify_second_factor,
)
from models.uow import Actor, WriteBusy, unit_of_work
from models.user import (
    PasswordPolicyError,
    StaffUser,
    authenticate,
    check_password_policy,
    password_needs_rehash,
    record_failed_second_factor,
    record_failed_sign_in,
    sign_in,
    sign_out,
    upgrade_password_hash,
)
from security import CheckedForm

bp = Blueprint("staff_auth", __name__)

# The session key of a sign-in waiting for its second step, and how long it may wait.
PENDING_KEY = "sign_in_pending"
DEFAULT_PENDING_MINUTES = 10
# The trusted-browser cookie: sent to the sign-in pages only.
DEVICE_COOKIE = "patron_device"
DEVICE_COOKIE_PATH = "/login"
DEVICE_SALT = "patron.trusted-device"
CODE = "code"
ENROL = "enrol"


def printable(form, field) -> None:
    """Control characters (a NUL, a line break) belong in no email or code; the database refuses some."""
    if isinstance(field.data, str) and any(unicodedata.category(ch) == "Cc" for ch in field.data):
        raise ValidationError(str(_l("Remove the invisible control characters from this field.")))


class LoginForm(CheckedForm):
    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254), printable])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=256)])
    submit = SubmitField(_l("Sign in"))


TRUST_DESCRIPTION = _l(
    "Sign-ins from this browser are then never held back by other people's failed attempts. "
    "Leave it unticked on a shared computer."
)


class SecondStepForm(CheckedForm):
    """A sign-in's second step: a code, and whether to trust this browser from now on."""

    trust = BooleanField(_l("Trust this browser"), description=TRUST_DESCRIPTION)


class CodeForm(SecondStepForm):
    code = StringField(
        _l("Code"),
        validators=[InputRequired(), Length(max=32), printable],
        description=_l("The 6-digit code your authenticator app shows, or one of your recovery codes."),
    )
    submit = SubmitField(_l("Continue"))


class EnrolForm(SecondStepForm):
    code = StringField(
        _l("Code from the app"),
        validators=[InputRequired(), Length(max=32), printable],
        description=_l("After adding Patron to the app, type the 6-digit code it shows."),
    )
    submit = SubmitField(_l("Turn on and sign in"))


class ForgotPasswordForm(CheckedForm):
    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254), printable])
    submit = SubmitField(_l("Ask for a new password"))


class NewPasswordForm(CheckedForm):
    new = PasswordField(
        _l("New password"),
        validators=[InputRequired(), Length(max=256)],
        description=_l("At least 12 characters; not a common password."),
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[InputRequired(), EqualTo("new", message=_l("The two passwords differ."))],
    )
    submit = SubmitField(_l("Set the new password"))

    email: str = ""

    def validate_new(self, field) -> None:
        try:
            check_password_policy(field.data, self.email)
        except PasswordPolicyError as exc:
            raise ValidationError(str(exc)) from None


def safe_next(target: str | None) -> str:
    """Only local paths are followed after sign-in; anything else goes to the panel's home."""
    home = url_for("admin.index")
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return home
    # A line break or another control character would end up in the Location header.
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in target):
        return home
    parts = urlsplit(target)
    if parts.netloc or parts.scheme:
        return home
    return target


# The trusted-browser cookie ---------------------------------------------------------------------


def _device_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=DEVICE_SALT)


def device_token() -> str | None:
    """The token of this browser's trusted-device cookie, if it carries a valid signature."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if not cookie:
        return None
    try:
        token = _device_serializer().loads(cookie, max_age=trusted_device_days() * 86400)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def set_device_cookie(response: Response, token: str) -> None:
    """Hand the browser its trusted-device cookie: signed, HttpOnly, SameSite=Lax, Secure in production."""
    response.set_cookie(
        DEVICE_COOKIE,
        _device_serializer().dumps(token),
        max_age=trusted_device_days() * 86400,
        path=DEVICE_COOKIE_PATH,
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Lax",
    )


def _attempt(email: str) -> tuple[Attempt, int | None]:
    """The attempt to sign in as `email` from this browser, and its trusted device's id if any."""
    device = known_device(device_token(), email)
    if device is None:
        return Attempt(request.remote_addr, email), None
    return Attempt(request.remote_addr, email, device.id, device.staff_user_id), device.id


# Answers ----------------------------------------------------------------------------------------


def _wait_text(seconds: int) -> str:
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5)


def _throttled(template: str, seconds: int, **context: t.Any) -> Response:
    """Refuse an attempt while its throttle holds: the same words whether the account exists or not."""
    flash(
        _("Too many failed attempts. Please wait %(wait)s and try again.", wait=_wait_text(seconds)), "error"
    )
    response = make_response(render_template(template, **context), 429)
    response.headers["Retry-After"] = str(seconds)
    return response


def _count_failure(attempt: Attempt, record: t.Callable[[], None]) -> int:
    """Audit a failed step and count it against its throttles; returns the delay it started."""
    try:
        with unit_of_work(Actor.anonymous(request.remote_addr)):
            record()
            return record_failure(attempt)
    except WriteBusy:
        # The refusal stands even if it could not be written down in time.
        current_app.logger.warning("failed sign-in not recorded: the database was busy")
        return 0


def _flash_delay(delay: int) -> None:
    if delay:
        flash(
            _("Too many failed attempts. Please wait %(wait)s before the next try.", wait=_wait_text(delay)),
            "error",
        )


def _private(page: str, status: int = 200) -> Response:
    """A page holding a secret or recovery codes: never stored by the browser or a proxy."""
    response = make_response(page, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _keep_language() -> dict[str, t.Any]:
    return {"lang": session["lang"]} if "lang" in session else {}


def _fresh_session(**values: t.Any) -> None:
    """Start a new session (nothing from before survives, against fixation) but the chosen language."""
    kept = _keep_language()
    session.clear()
    session.update(kept | values)


def _finish(user: StaffUser, target: str, device: str | None, response: Response | None = None) -> Response:
    """Sign the browser in (once every step is stored), in a fresh session."""
    _fresh_session()
    login_user(user)
    session.permanent = True
    response = response or redirect(target)
    if device:
        set_device_cookie(response, device)
    return response


# The password step ------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target)
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    attempt, device_id = _attempt(form.email.data)
    wait = wait_seconds(attempt)
    if wait:
        return _throttled("auth/login.html", wait, form=form)
    user = authenticate(form.email.data, form.password.data)
    if user is None:
        delay = _count_failure(attempt, lambda: record_failed_sign_in(form.email.data))
        flash(_("Wrong email or password."), "error")
        _flash_delay(delay)
        return render_template("auth/login.html", form=form), 200
    if has_two_factor(user) or two_factor_required(user):
        return _second_step(user, form, target, device_id)
    try:
        with unit_of_work(Actor.staff(user, request.remote_addr)):
            sign_in(user, form.password.data)
            record_success(attempt)
    except WriteBusy:
        flash(_("The database was busy; you are not signed in yet. Please try again."), "error")
        return render_template("auth/login.html", form=form), 503
    return _finish(user, target, None)


def _second_step(user: StaffUser, form: LoginForm, target: str, device_id: int | None) -> Response:
    """The password was right: wait for the code (or the enrolment), signed in to nothing yet."""
    if password_needs_rehash(user):
        try:
            with unit_of_work(Actor.staff(user, request.remote_addr)):
                upgrade_password_hash(user, form.password.data)
        except WriteBusy:
            pass  # upgraded at a later sign-in; the hash in place still holds
    step = CODE if has_two_factor(user) else ENROL
    pending = {
        "user": user.id,
        "version": user.session_version,
        "started": int(time.time()),
        "next": target,
        "step": step,
        "device": device_id,
    }
    if step == ENROL:
        pending["secret"] = seal_candidate(user, new_secret())
    _fresh_session(**{PENDING_KEY: pending})
    return redirect(url_for(".second_factor" if step == CODE else ".enrol"))


def _pending(step: str) -> tuple[dict, StaffUser] | None:
    """The sign-in waiting for this step, if it is recent and its account unchanged since."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or pending.get("step") != step:
        return None
    minutes = int(current_app.config.get("TWO_FACTOR_PENDING_MINUTES", DEFAULT_PENDING_MINUTES))
    if time.time() - int(pending.get("started", 0)) > minutes * 60:
        session.pop(PENDING_KEY, None)
        flash(_("That took too long; please sign in again."), "info")
        return None
    user = db.session.get(StaffUser, int(pending.get("user", 0)))
    if user is None or not user.active or user.session_version != pending.get("version"):
        session.pop(PENDING_KEY, None)
        return None
    if has_two_factor(user) != (step == CODE):
        return None
    return pending, user


def _pending_attempt(pending: dict, user: StaffUser) -> Attempt:
    """The attempt of the pending sign-in: its trusted browser if the cookie still names it."""
    device = known_device(device_token(), user.email)
    if device is not None and device.id == pending.get("device"):
        return Attempt(request.remote_addr, user.email, device.id, device.staff_user_id)
    return Attempt(request.remote_addr, user.email)


# The code step ----------------------------------------------------------------------------------


@bp.route("/login/code", methods=["GET", "POST"])
def second_factor():
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    found = _pending(CODE)
    if found is None:
        return redirect(url_for(".login"))
    pending, user = found
    attempt = _pending_attempt(pending, user)
    form = CodeForm()
    trusted = attempt.device_id is not None
    page = {"form": form, "trusted": trusted}
    if not form.validate_on_submit():
        return render_template("auth/code.html", **page)
    wait = wait_seconds(attempt)
    if wait:
        return _throttled("auth/code.html", wait, **page)
    factor: SecondFactor | None = None
    device: str | None = None
    try:
        with unit_of_work(Actor.staff(user, request.remote_addr)):
            factor = verify_second_factor(user, form.code.data)
            if factor is not None:
                sign_in(user, second_factor=factor)
                record_success(attempt)
                if attempt.device_id is not None:
                    touch_device(attempt.device_id)
                elif form.trust.data:
                    device = trust_device(user)
    except WriteBusy:
        flash(_("The database was busy; you are not signed in yet. Please try again."), "error")
        return make_response(render_template("auth/code.html", **page), 503)
    if factor is None:
        delay = _count_failure(attempt, lambda: record_failed_second_factor(user))
        flash(_("That code is not right, or it was used already. Please try the next code."), "error")
        _flash_delay(delay)
        return make_response(render_template("auth/code.html", **page), 200)
    response = _finish(user, pending["next"], device)
    if factor == "recovery":
        left = recovery_codes_left(user)
        flash(
            _(
                "You signed in with a recovery code; %(n)d left. Make new ones on your two-factor page.",
                n=left,
            ),
            "warning",
        )
    return response


# The enrolment step ----------------------------------------------------------------------------


@bp.route("/login/enrol", methods=["GET", "POST"])
def enrol():
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    found = _pending(ENROL)
    if found is None:
        return redirect(url_for(".login"))
    pending, user = found
    secret = open_candidate(user, pending.get("secret"))
    if secret is None:
        session.pop(PENDING_KEY, None)
        return redirect(url_for(".login"))
    form = EnrolForm()
    qr = qr_svg(provisioning_uri(secret, user.email))
    page = {"form": form, "user": user, "secret": grouped(secret), "qr": qr}
    if not form.validate_on_submit():
        return _private(render_template("auth/enrol.html", **page))
    attempt = _pending_attempt(pending, user)
    codes: list[str] | None = None
    device: str | None = None
    try:
        with unit_of_work(Actor.staff(user, request.remote_addr)):
            codes = enable_two_factor(user, secret, form.code.data)
            if codes is not None:
                sign_in(user, second_factor="totp")
                record_success(attempt)
                if form.trust.data:
                    device = trust_device(user)
    except TwoFactorError:
        session.pop(PENDING_KEY, None)
        flash(_("Two-factor sign-in is already on for this account; please sign in again."), "info")
        return redirect(url_for(".login"))
    except WriteBusy:
        flash(_("The database was busy; you are not signed in yet. Please try again."), "error")
        return _private(render_template("auth/enrol.html", **page), 503)
    if codes is None:
        # Not counted against the throttles: the code of a secret shown on this very page
        # guards nothing, and a phone's clock a little off must not lock its owner out.
        form.code.errors = [_("That is not the code the app shows now. Check the app and try again.")]
        return _private(render_template("auth/enrol.html", **page))
    shown = _private(render_template("auth/recovery_codes.html", codes=codes, next=pending["next"]))
    return _finish(user, pending["next"], device, shown)


# Forgotten passwords --------------------------------------------------------------------------


def _forgot_limit() -> str:
    return current_app.config["PASSWORD_RESET_RATE_LIMIT"]


@bp.route("/login/forgot", methods=["GET", "POST"])
@limiter.limit(_forgot_limit, methods=["POST"])
def forgot_password():
    """Ask for a new password: recorded for an admin, the same answer whether the email is known or not."""
    if current_user.is_authenticated:
        return redirect(url_for("account.index"))
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form, minutes=LINK_MINUTES)
    try:
        with unit_of_work(Actor.anonymous(request.remote_addr)):
            record_reset_request(form.email.data)
    except WriteBusy:
        flash(_("The database was busy; your request was not recorded. Please try again."), "error")
        return render_template("auth/forgot.html", form=form, minutes=LINK_MINUTES), 503
    return render_template("auth/forgot_sent.html")


@bp.errorhandler(429)
def _too_many(exc):
    """The forgot-password form refused by its rate limit: shown again with the email typed."""
    headers = {"Retry-After": str(seconds_until_allowed())}
    if request.endpoint != "staff_auth.forgot_password":
        message = _("Too many attempts. Please wait a little and try again.")
        return render_template("error.html", code=429, message=message), 429, headers
    flash(_("Too many requests from your connection. Please wait a few minutes and try again."), "error")
    form = ForgotPasswordForm()
    return render_template("auth/forgot.html", form=form, minutes=LINK_MINUTES), 429, headers


@bp.route("/login/reset/<token>", methods=["GET", "POST"])
def reset_with_link(token: str):
    """The page a reset link opens: choose a new password; the link then stops working."""
    reset = find_password_reset(token)
    if reset is None:
        return render_template("auth/reset_gone.html", minutes=LINK_MINUTES), 410
    user = db.session.get(StaffUser, reset.staff_user_id)
    assert user is not None  # find_password_reset checked it
    form = NewPasswordForm()
    form.email = user.email
    page = {"form": form, "email": user.email, "expires_at": reset.expires_at}
    if not form.validate_on_submit():
        return render_template("auth/reset.html", **page)
    try:
        with unit_of_work(Actor.staff(user, request.remote_addr)):
            reset_password(token, form.new.data)
    except PasswordResetError:
        return render_template("auth/reset_gone.html", minutes=LINK_MINUTES), 410
    except PasswordPolicyError as exc:
        form.new.errors = [str(exc)]
        return render_template("auth/reset.html", **page)
    except WriteBusy:
        flash(_("The database was busy; your password was not changed. Please try again."), "error")
        return render_template("auth/reset.html", **page), 503
    if current_user.is_authenticated:
        logout_user()
    _fresh_session()
    flash(
        _("Your new password is set, and every session of your account was signed out. Sign in with it now."),
        "success",
    )
    return redirect(url_for(".login"))


# Sign-out ---------------------------------------------------------------------------------------


@bp.route("/logout", methods=["POST"])
def logout():
    try:
        validate_csrf(request.form.get("logout_token"))
    except Exception:
        abort(400)
    if current_user.is_authenticated:
        user = current_user._get_current_object()
        # A busy database answers 503 (the app's WriteBusy handler) and leaves the session
        # as it was: ending this cookie alone would leave the account's other sessions open.
        with unit_of_work(Actor.staff(user, request.remote_addr)):
            sign_out(user)
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("staff_auth.login"))
