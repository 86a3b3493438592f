"""Web security shared by staff and public pages: CSRF-checked forms and response headers."""

from __future__ import annotations

import secrets
from functools import cache

from babel.support import NullTranslations, Translations
from flask import Flask, abort, g
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


@cache
def _wtforms_messages(locale: str) -> NullTranslations:
    """WTForms' own messages in one language, read from disk once per process."""
    return Translations.load(messages_path(), [locale], domain="wtforms")


class CheckedForm(FlaskForm):
    """A Flask-WTF form whose missing or wrong CSRF token is a 400, not a re-shown form."""

    class Meta:
        def get_translations(self, form):
            # Flask-WTF would parse the catalogue on every form; once per locale is enough.
            return _wtforms_messages(str(get_locale() or "en"))

    def validate_on_submit(self, extra_validators=None) -> bool:
        if not self.is_submitted():
            return False
        valid = self.validate(extra_validators=extra_validators)
        if self.meta.csrf and "csrf_token" in self.errors:
            abort(400, description="CSRF token missing or invalid.")
        return valid


def csp_nonce() -> str:
    """This response's Content-Security-Policy nonce for inline scripts (one per request)."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return nonce


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def register_security_headers(app: Flask) -> None:
    """Add conservative security headers to every response."""

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
