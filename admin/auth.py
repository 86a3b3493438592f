"""Staff sign-in and sign-out: CSRF, a validated `next`, throttled and audited failures."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import validate_csrf
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import InputRequired, Length

from extensions import limiter
from models.uow import Actor, WriteBusy, unit_of_work
from models.user import authenticate, record_failed_sign_in, sign_in, sign_out
from security import CheckedForm

bp = Blueprint("staff_auth", __name__)


class LoginForm(CheckedForm):
    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=256)])
    submit = SubmitField(_l("Sign in"))


def safe_next(target: str | None) -> str:
    """Only local paths are followed after sign-in; anything else goes to the panel's home."""
    if not target or urlsplit(target).netloc or urlsplit(target).scheme or not target.startswith("/"):
        return url_for("admin.index")
    if target.startswith("//") or "\\" in target:
        return url_for("admin.index")
    return target


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["LOGIN_FAILURES_PER_ACCOUNT"]


def _account_key() -> str:
    return "login-account:" + (request.form.get("email") or "").strip().lower()


def _failed(_response) -> bool:
    return bool(g.get("login_failed"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_account_limit, methods=["POST"], key_func=_account_key, deduct_when=_failed)
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            g.login_failed = True
            try:
                with unit_of_work(Actor.anonymous(request.remote_addr)):
                    record_failed_sign_in(form.email.data)
            except WriteBusy:
                # The refusal stands (and counts against the limit) even if its audit row could
                # not be written in time.
                current_app.logger.warning("failed sign-in not audited: the database was busy")
            flash(_("Wrong email or password."), "error")
            return render_template("auth/login.html", form=form), 200
        try:
            with unit_of_work(Actor.staff(user, request.remote_addr)):
                sign_in(user, form.password.data)
        except WriteBusy:
            flash(_("The database was busy; you are not signed in yet. Please try again."), "error")
            return render_template("auth/login.html", form=form), 503
        # A fresh session on sign-in: nothing from before the login survives (fixation). Only
        # once the sign-in is stored: a sign-in that failed to save leaves the visitor out.
        session.clear()
        login_user(user)
        session.permanent = True
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


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
