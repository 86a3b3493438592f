"""Web security shared by staff and public pages: CSRF-checked forms, response headers, the
client's address behind trusted proxies, and logs that carry request ids but no personal data."""

from __future__ import annotations

import logging
import re
import secrets
import typing as t
from collections.abc import Iterable
from contextvars import ContextVar
from functools import cache

from babel.support import NullTranslations, Translations
from flask import Flask, abort, g, has_request_context, request
from flask.logging import default_handler
from flask.sessions import SecureCookieSessionInterface
from flask_babel import get_locale
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import ClosingIterator
from wtforms.fields import FileField
from wtforms.i18n import messages_path


@cache
def _wtforms_messages(locale: str) -> NullTranslations:
    """WTForms' own messages in one language, read from disk once per process."""
    return Translations.load(messages_path(), [locale], domain="wtforms")


SUBMIT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CheckedForm(FlaskForm):
    """A Flask-WTF form whose missing or wrong CSRF token is a 400, not a re-shown form."""

    class Meta:
        def get_translations(self, form):
            # Flask-WTF would parse the catalogue on every form; once per locale is enough.
            return _wtforms_messages(str(get_locale() or "en"))

        def wrap_formdata(self, form, formdata):
            """Text fields read the request's text fields; file fields its files; nothing else.

            Flask-WTF (1.3) would hand every field the file parts and JSON bodies too: a text
            field given a file, or a JSON number or list, fails inside its validators with a
            server error. Here a text field sent as a file is simply missing (the form comes
            back saying so), and a JSON body is no form at all (no CSRF token: 400).
            """
            if formdata is None or hasattr(formdata, "getlist"):
                return formdata  # given by the caller, or explicitly none
            if request.method not in SUBMIT_METHODS:
                return None
            data: MultiDict[str, t.Any] = MultiDict(request.form)
            for field in form:
                if isinstance(field, FileField):
                    data.setlist(field.name, request.files.getlist(field.name))
            return data or None

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


def content_security_policy(nonce: str) -> str:
    """The policy of every response: scripts from our origin or carrying this response's nonce,
    never inline handlers or javascript: URLs; inline styles stay allowed (Flask-Admin sets them)."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ]
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def is_static_file(endpoint: str | None) -> bool:
    """Our own and Flask-Admin's static files: public, the same for everyone, cacheable."""
    return endpoint is not None and (endpoint == "static" or endpoint.endswith(".static"))


def register_security_headers(app: Flask) -> None:
    """Conservative security headers, a Content-Security-Policy and no-store on every response."""

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", content_security_policy(csp_nonce()))
        if not is_static_file(request.endpoint):
            # Pages, exports and API answers carry personal data or a session's CSRF token:
            # no browser or proxy cache may keep them (a QR code sent with no-cache included).
            response.headers["Cache-Control"] = "no-store"
        if app.config.get("SESSION_COOKIE_SECURE") or request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response


# Behind reverse proxies ------------------------------------------------------------------------


class ProxyAwareSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, marked Secure also when the request came over HTTPS
    (as a trusted proxy reports it), not only when SESSION_COOKIE_SECURE says so."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def register_proxies(app: Flask) -> None:
    """Read the client's address and scheme from the last TRUSTED_PROXIES hops (0: none).

    With N trusted proxies, werkzeug's ProxyFix takes the N-th address from the right of
    X-Forwarded-For (the one our own proxy appended) as request.remote_addr, and the scheme
    from X-Forwarded-Proto. Rate limits (keyed by remote_addr), audit addresses, request.is_secure
    (Secure session cookies) and external URLs follow it. With 0 those headers are ignored, so a
    client cannot choose its own address. X-Forwarded-Host is never trusted: the proxy passes
    the Host header on (nginx: proxy_set_header Host $host).
    """
    hops = app.config.get("TRUSTED_PROXIES") or 0
    if not isinstance(hops, int) or isinstance(hops, bool) or hops < 0:
        raise ValueError(f"TRUSTED_PROXIES must be a whole number of proxies, 0 or more, not {hops!r}")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.session_interface = ProxyAwareSessionInterface()


# Request ids and logs without personal data ------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-Id"
# An id a trusted proxy may hand on (nginx's $request_id, a UUID); anything else is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}")
_request_id: ContextVar[str | None] = ContextVar("patron_request_id", default=None)


def current_request_id() -> str:
    """The id of the request being served ("-" outside a request: commands, jobs, start-up)."""
    return _request_id.get() or "-"


class RequestIds:
    """WSGI middleware: an id per request, in every log line written while serving it (the dev
    server's access line included) and in the X-Request-Id response header."""

    def __init__(self, wsgi_app, trust_header: bool) -> None:
        self.wsgi_app = wsgi_app
        self.trust_header = trust_header

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        trusted = self.trust_header and _SANE_REQUEST_ID.fullmatch(given)
        request_id = given if trusted else secrets.token_hex(8)
        _request_id.set(request_id)

        def start(status: str, headers: list, exc_info=None):
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            _forget_request_id()
            raise
        return ClosingIterator(body, _forget_request_id)


def _forget_request_id() -> None:
    """The request is answered: later lines of this thread belong to no request."""
    _request_id.set(None)


def register_request_ids(app: Flask) -> None:
    """Give every request an id; a trusted proxy's own X-Request-Id is kept (TRUSTED_PROXIES > 0)."""
    app.wsgi_app = RequestIds(app.wsgi_app, trust_header=bool(app.config.get("TRUSTED_PROXIES")))  # type: ignore[method-assign]


LOG_FORMAT = "[%(asctime)s] %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds the request id to a record, for formats that show %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


# The query string of a request line or URL (searched emails and phone numbers, tracking codes
# typed into /track?code=…), up to the protocol of a request line; and the secret of a personal
# survey link, a complaint's tracking link or a staff password reset link ("/s/<token>",
# "/track/<code>", "/login/reset/<token>").
_QUERY_STRING = re.compile(r"\?.*(?= HTTP/)|\?[^\s\"']*")
_LINK_SECRET = re.compile(r"((?:^|[\s\"'(]|//[^/\s]+)/(?:s|track|login/reset)/)[^/\s?\"']+")


# werkzeug colours its request lines for a terminal; in a log file they are noise.
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def without_link_secrets(text: str) -> str:
    """A text with the secrets of survey, tracking and password reset links replaced by "…"."""
    return _LINK_SECRET.sub("\\1…", text)


def loggable_request_line(text: str) -> str:
    """A request line, URL or access-log line without query strings and link secrets."""
    return without_link_secrets(_QUERY_STRING.sub("", text))


class AccessLineFilter(logging.Filter):
    """Rewrites a logger's records before any handler sees them: the dev server's request lines
    without query strings, link secrets or a second timestamp; other lines (Flask's "Exception
    on /s/<token> [POST]") without link secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == "werkzeug":
            message = _TERMINAL_COLOURS.sub("", loggable_request_line(message))
            message = re.sub(r" - - \[[^\]]*\]", "", message, count=1)
        else:
            message = without_link_secrets(message)
        record.msg, record.args = message, ()
        return True


class RateLimitKeyFilter(logging.Filter):
    """Flask-Limiter logs the key of a limit it enforces (an address, or whatever a limit is
    counted by, such as an email typed). The line keeps the limit and the endpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 3 and "exceeded" in str(record.msg):
            limit, _key, endpoint = record.args
            record.msg, record.args = "ratelimit %s exceeded at endpoint: %s", (limit, endpoint)
        return True


class NoResultRowsFilter(logging.Filter):
    """SQLAlchemy's engine logs every result row at DEBUG, decrypted: never written, whatever the
    level (SQL statements still are, with their parameters hidden)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


def register_logging(app: Flask) -> None:
    """Every log line shows its request id; access lines and error lines carry no query strings
    and no link secrets; rate-limit lines no keys; SQLAlchemy's DEBUG lines no result rows. SQL
    parameters are hidden by the engine option hide_parameters (config.py).

    Logging that a deployment configured itself is kept (its handlers get the request id); if
    there is none (flask run, a command, gunicorn), one handler on standard error writes LOG_FORMAT.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    default_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for handler in [*root.handlers, default_handler]:
        _add_filter_once(handler, RequestIdFilter)
    for name in ("werkzeug", app.logger.name):
        _add_filter_once(logging.getLogger(name), AccessLineFilter)
    _add_filter_once(logging.getLogger("flask-limiter"), RateLimitKeyFilter)
    _add_filter_once(logging.getLogger("sqlalchemy.engine.Engine"), NoResultRowsFilter)


def _add_filter_once(target: logging.Filterer, kind: type[logging.Filter]) -> None:
    """Add a filter of this kind unless the handler or logger has one (create_app runs per test)."""
    if not any(isinstance(existing, kind) for existing in target.filters):
        target.addFilter(kind())
