"""Flask extensions, created unbound here and bound to each app in create_app()."""

import time

from flask import current_app, g, has_request_context, request, session
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_migrate import Migrate

login_manager = LoginManager()
migrate = Migrate(render_as_batch=True, compare_type=True)
limiter = Limiter(key_func=get_remote_address, default_limits=[])
babel = Babel()

SUPPORTED_LOCALES = ("en", "zh_Hans_CN")


def seconds_until_allowed() -> int:
    """After a 429: how many seconds until the limit that refused this request lets it in again."""
    current = limiter.current_limit
    return max(1, int(current.reset_at - time.time()) + 1) if current is not None else 60


def select_locale() -> str:
    """The visitor's explicit choice, the staff member's setting, the page's language
    (a survey in the customer's language), else the browser's Accept-Language.

    Any Chinese request answers zh_Hans_CN, the name Flask-Admin's catalogue uses.
    """
    if not has_request_context():
        return "en"
    explicit = request.args.get("lang")
    if explicit in SUPPORTED_LOCALES:
        session["lang"] = explicit  # the visitor's choice holds on the following pages
        return explicit
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.language:
        return current_user.language
    if session.get("lang") in SUPPORTED_LOCALES:
        return session["lang"]
    if g.get("page_locale") in SUPPORTED_LOCALES:
        return g.page_locale
    best = request.accept_languages.best_match(["en", "zh", "zh-CN", "zh-Hans", "zh-TW"], default="en")
    return "zh_Hans_CN" if best.lower().startswith("zh") else "en"


def select_timezone() -> str:
    """The staff member's time zone, else the panel's default (DEFAULT_TIMEZONE)."""
    if has_request_context() and getattr(current_user, "is_authenticated", False) and current_user.timezone:
        return current_user.timezone
    return current_app.config.get("DEFAULT_TIMEZONE", "UTC")
