"""The application factory."""

from __future__ import annotations

import os
from datetime import timedelta

from flask import Flask, jsonify, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

import config
from extensions import babel, limiter, login_manager, migrate, select_locale, select_timezone
from models import configure_engine, db
from models.crypto import EXTENSION_KEY, KeyRing
from models.uow import WriteBusy
from security import (
    csp_nonce,
    register_logging,
    register_proxies,
    register_request_ids,
    register_security_headers,
)


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure a Patron app."""
    # Everything written from here on (the SQLite files, keys, secret, backups) is private (0600).
    os.umask(config.PRIVATE_UMASK)
    instance_path = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("PATRON_INSTANCE_PATH")
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    register_logging(app)
    register_config(app, test_config)
    register_extensions(app)
    register_keyring(app)
    register_blueprints(app)
    register_admin(app)
    register_template_globals(app)
    register_errorhandlers(app)
    register_security_headers(app)
    register_session_hooks(app)
    register_proxies(app)
    register_request_ids(app)
    register_cli(app)
    return app


def register_config(app: Flask, test_config: dict | None) -> None:
    """Defaults, then instance/config.py, then PATRON_* environment variables, then test overrides."""
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(config.DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("PATRON")
    if os.environ.get("PATRON_ENV") == "production":
        app.config.from_mapping(config.PRODUCTION)
    if test_config:
        app.config.from_mapping(test_config)
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", config.database_url(app.instance_path))
    # The session cookie lasts as long as a session may: the server ends it sooner when idle,
    # and can then say why (a cookie that vanished on its own would say nothing).
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=float(app.config["SESSION_ABSOLUTE_HOURS"]))
    options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS")
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = config.engine_options(options)
    for path in config.make_files_private(app.instance_path, app.config["SQLALCHEMY_DATABASE_URI"]):
        app.logger.warning("%s was readable by others; now by its owner only", path.name)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.load_secret_key(app.instance_path)
    if os.environ.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = os.environ["RATELIMIT_STORAGE_URI"]


def register_extensions(app: Flask) -> None:
    """Bind the unbound extensions to this app."""
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "staff_auth.login"
    login_manager.session_protection = "strong"
    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=os.path.join(os.path.dirname(__file__), "translations"),
    )
    limiter.init_app(app)

    from models.user import load_session_user

    login_manager.user_loader(load_session_user)


def register_keyring(app: Flask) -> None:
    """Load the encryption and blind-index keys (environment, else instance/keys.json)."""
    material = app.config.get("PATRON_KEY_MATERIAL") or config.load_key_material(app.instance_path)
    app.extensions[EXTENSION_KEY] = KeyRing.from_material(material)


def register_blueprints(app: Flask) -> None:
    """Staff sign-in and the public pages."""
    from admin.auth import bp as staff_auth_bp
    from api import bp as api_bp
    from surveys import bp as surveys_bp

    app.register_blueprint(staff_auth_bp)
    app.register_blueprint(surveys_bp)
    app.register_blueprint(api_bp)

    @app.route("/")
    def home():
        return redirect(url_for("admin.index"))


def register_session_hooks(app: Flask) -> None:
    """Staff sessions: recorded at sign-in, ended when idle or too old (admin/session_hooks.py)."""
    from admin.session_hooks import register_session_hooks as register

    register(app)


def register_admin(app: Flask) -> None:
    """The staff screens under /admin."""
    from admin import init_admin

    init_admin(app)


def register_template_globals(app: Flask) -> None:
    """Helpers every template may use: CSRF tokens, role names, the active locale."""
    from flask_babel import get_locale
    from flask_wtf.csrf import generate_csrf

    from models.user import ROLE_LABELS

    # Not named csrf_token: Flask-Admin templates would add a second token to every form.
    app.jinja_env.globals["logout_token"] = generate_csrf
    app.jinja_env.globals["role_label"] = lambda role: ROLE_LABELS.get(role, role)
    # <script nonce="{{ csp_nonce() }}">: the one kind of inline script the CSP lets run.
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.context_processor
    def _locale():
        return {"current_locale": str(get_locale() or "en")}


def register_errorhandlers(app: Flask) -> None:
    """Plain, translated error pages."""
    messages = {
        400: lambda: _("The request could not be understood. If you sent a form, reload it and try again."),
        403: lambda: _("You do not have permission to open this page."),
        404: lambda: _("This page does not exist."),
        410: lambda: _("This link is no longer valid."),
        429: lambda: _("Too many attempts. Please wait a little and try again."),
        500: lambda: _(
            "Something went wrong on our side. If you were saving something, it may not have been "
            "saved; please check and try again."
        ),
        503: lambda: _("The database was busy; your change was not saved. Please try again."),
    }

    def handler(exc):
        code = getattr(exc, "code", 500) or 500
        if request.path.startswith("/api/"):
            # API clients always get JSON, whatever went wrong.
            name = getattr(exc, "name", "error").lower().replace(" ", "_")
            response = jsonify({"error": {"code": name, "message": getattr(exc, "description", str(exc))}})
        else:
            response = make_response(
                render_template("error.html", code=code, message=messages.get(code, messages[500])())
            )
        # Keep the exception's own headers (Allow on a 405, Retry-After on a 429).
        if isinstance(exc, HTTPException):
            response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response, code

    for code in [*messages, 405, 413, 415, 500]:
        app.register_error_handler(code, handler)

    def busy(exc: WriteBusy):
        # The fallback for a door that does not answer a busy database itself: nothing of the
        # change was stored (the unit of work rolled it back), so "try again" is the truth.
        message = messages[503]()
        if request.path.startswith("/api/"):
            response = jsonify({"error": {"code": "database_busy", "message": message}})
        else:
            response = make_response(render_template("error.html", code=503, message=message))
        response.headers["Retry-After"] = "1"
        return response, 503

    app.register_error_handler(WriteBusy, busy)


def register_cli(app: Flask) -> None:
    """Management commands (flask --app app ...)."""
    from cli import commands

    for command in commands:
        app.cli.add_command(command)
