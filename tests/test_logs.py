"""Logs without personal data: canaries sent through every door never reach a log line, at any
level, in the app's logs, the dev server's access lines or gunicorn's; every line names its request."""

from __future__ import annotations

import html
import logging
import re
import secrets
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bench.common import gunicorn
from models import db
from models.api_key import create_api_key
from models.surveys.builder import Question, Survey
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from security import LOG_FORMAT, RequestIdFilter
from tests.conftest import csrf_token
from tests.live_server import server_environment

ROOT = Path(__file__).resolve().parents[1]


KINDS = ("email", "name", "message", "secret", "search")


@dataclass(frozen=True)
class Canaries:
    """Personal data nobody else would write: each holds a unique mark to look for in the logs."""

    mark: dict[str, str] = field(default_factory=lambda: {k: secrets.token_hex(6) for k in KINDS})
    phone_digits: str = field(
        default_factory=lambda: "139" + "".join(secrets.choice("0123456789") for _ in range(8))
    )

    @property
    def email(self) -> str:
        return f"canary.{self.mark['email']}@example.com"

    @property
    def name(self) -> str:
        return f"Canary {self.mark['name']}"

    @property
    def message(self) -> str:
        return f"My order never came, canary {self.mark['message']}."

    @property
    def secret(self) -> str:
        """A tracking code or survey token as a client would send it."""
        return f"canary{self.mark['secret']}"

    def found_in(self, text: str) -> list[str]:
        """The log lines that hold a canary's mark (so in any encoding of it)."""
        marks = [*self.mark.values(), self.phone_digits[3:]]
        return [line for line in text.splitlines() if any(mark in line for mark in marks)]


class Captured(logging.Handler):
    """Every record any logger writes, formatted with its exception and the request id."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(request_id)s %(levelname)s %(name)s: %(message)s"))
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# Loggers whose level someone may have set (the migrations' logging config sets SQLAlchemy's).
DEBUG_LOGGERS = ("", "werkzeug", "sqlalchemy", "sqlalchemy.engine", "flask-limiter")


@pytest.fixture(autouse=True)
def captured() -> Iterator[Captured]:
    """All logging at DEBUG, from before the app (and its database engine) is made."""
    handler = Captured()
    loggers = [logging.getLogger(name) for name in DEBUG_LOGGERS]
    levels = [logger.level for logger in loggers]
    logging.getLogger().addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture
def survey(app) -> Survey:
    survey = Survey(title="Your visit", language="en", public_link=True, public_slug="visit")
    survey.questions = [Question(position=1, kind="text", prompt="Anything to tell us?", required=True)]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def post_form(client, url: str, fields: dict[str, str], **kwargs):
    page = client.get(url)
    data = {"csrf_token": csrf_token(page.text)} | fields
    if 'name="submission_key"' in page.text:
        data["submission_key"] = csrf_token(page.text, "submission_key")
    return client.post(url, data=data, **kwargs)


def failed_sign_in(client, c: Canaries) -> None:
    response = post_form(client, "/login", {"email": c.email, "password": "not the password"})
    assert response.status_code == 200
    assert "Wrong email or password." in response.text


def public_doors(client, survey: Survey, c: Canaries) -> None:
    feedback = {"kind": "complaint", "message": c.message, "name": c.name, "email": c.email}
    assert post_form(client, "/feedback", feedback | {"phone": c.phone_digits}).status_code == 302
    question = survey.questions[0]
    assert post_form(client, "/p/visit", {f"q{question.id}": c.message}).status_code == 200
    assert client.get(f"/track/{c.secret}").status_code == 404
    assert client.get(f"/s/{c.secret}").status_code == 404
    assert (
        client.get("/track", query_string={"code": c.secret}).status_code == 404
    )  # the look-up form again, with the reason


def staff_doors(client, auth, c: Canaries) -> None:
    """An agent creates a customer with the canaries, then searches by email, phone and name."""
    assert auth.login(Role.AGENT).status_code == 302
    customer = {"name": c.name, "email": c.email, "phone": c.phone_digits, "notes": c.message}
    response = post_form(
        client, "/admin/customers/new/", customer | {"language": "en", "source_channel": "store"}
    )
    assert response.status_code == 302, response.text
    for term in (c.email, c.phone_digits, c.name, f"canary {c.mark['search']}"):
        page = client.get("/admin/customers/")
        form = re.search(r'<form method="POST" action="([^"]+)"[^>]*role="search"', page.text)
        data = {"search": term, "csrf_token": csrf_token(page.text)}
        answer = client.post(html.unescape(form.group(1)), data=data)
        assert answer.status_code == 302
        assert client.get(answer.location).status_code == 200


def api_door(client, c: Canaries) -> None:
    with unit_of_work(SYSTEM):
        _key, key = create_api_key("Till", "pos", ["purchases:write"])
    purchase = {
        "customer": {"email": c.email},
        "order_ref": f"order-{secrets.token_hex(4)}",
        "amount": "12.50",
        "currency": "CNY",
    }
    response = client.post("/api/v1/purchases", json=purchase, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.json
    # Another number with the same canary digits, of nobody: "No customer matches."
    unknown = purchase | {"customer": {"phone": "+86 137" + c.phone_digits[3:]}}
    response = client.post("/api/v1/purchases", json=unknown, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404


def server_error_door(app, client, c: Canaries):
    """A view that fails inside the database with a canary among its SQL parameters: a 500."""

    def fail():
        from flask import request

        db.session.execute(
            sa.text("SELECT * FROM no_such_table WHERE email = :email"), {"email": request.args["email"]}
        )

    app.add_url_rule("/test-fail", "test_fail", fail)
    response = client.get("/test-fail", query_string={"email": c.email})
    assert response.status_code == 500
    return response


@pytest.mark.parametrize("app_config", [{"PROPAGATE_EXCEPTIONS": False}])
def test_canaries_through_every_door_reach_no_log_line(app, client, auth, survey, captured, canaries):
    """Sign-in, the public forms, a survey answer, the API, staff create and search, a 500."""
    failed = server_error_door(app, client, canaries)
    failed_sign_in(client, canaries)
    public_doors(client, survey, canaries)
    staff_doors(client, auth, canaries)
    api_door(client, canaries)

    # The logs were written, SQL statements included; their values were not.
    assert "SQL parameters hidden due to hide_parameters=True" in captured.text
    assert "Exception on /test-fail [GET]" in captured.text
    assert "no_such_table" in captured.text
    assert canaries.found_in(captured.text) == []
    # The error's line names the request it happened in.
    (line,) = [line for line in captured.lines if "Exception on /test-fail" in line]
    assert line.startswith(f"{failed.headers['X-Request-Id']} ERROR ")


def test_throttled_sign_ins_log_no_email(app, client, captured, canaries):
    """Failed sign-ins past every throttle's threshold: the email typed is in no line."""
    for _ in range(12):
        post_form(client, "/login", {"email": canaries.email, "password": "not the password"})
    assert canaries.found_in(captured.text) == []


@pytest.mark.parametrize("app_config", [{"PUBLIC_FORM_RATE_LIMIT": "1 per minute"}])
def test_rate_limit_lines_name_the_limit_and_the_page_not_the_key(client, captured):
    """Flask-Limiter logs the key it counted by (an address, or whatever a limit keys on)."""
    visitor = {"REMOTE_ADDR": "198.51.100.23"}
    statuses = [
        post_form(
            client, "/feedback", {"kind": "complaint", "message": "Late"}, environ_base=visitor
        ).status_code
        for _ in range(2)
    ]
    assert statuses == [302, 429]
    lines = [line for line in captured.lines if " flask-limiter: " in line]
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO flask-limiter: ratelimit 1 per 1 minute exceeded at endpoint: surveys.feedback"
    ]
    assert "198.51.100.23" not in captured.text


# The dev server (`flask run`, `make run`) ----------------------------------------------------------


@pytest.fixture
def dev_server(app) -> Iterator[str]:
    """The app behind werkzeug's own server and request handler, which logs a line per request."""
    app.config["SERVER_NAME"] = None  # the shared config's "localhost" would 404 127.0.0.1:PORT
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fetch(url: str) -> tuple[int, str]:
    """Status and X-Request-Id of a GET (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers["X-Request-Id"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["X-Request-Id"]


def canary_urls(c: Canaries) -> dict[str, tuple[int, str]]:
    """URLs with personal data or secrets in them, as browsers and old bookmarks send them:
    (status, the request line the access log may show)."""
    return {
        f"/admin/customers/?search={c.email}": (302, "GET /admin/customers/ HTTP/1.1"),
        f"/admin/customers/?search={c.phone_digits}&sort=1": (302, "GET /admin/customers/ HTTP/1.1"),
        f"/feedback?name={c.mark['name']}": (200, "GET /feedback HTTP/1.1"),
        f"/track?code={c.secret}": (404, "GET /track HTTP/1.1"),
        f"/track/{c.secret}": (404, "GET /track/… HTTP/1.1"),
        f"/s/{c.secret}": (404, "GET /s/… HTTP/1.1"),
        f"/login/reset/{c.secret}": (410, "GET /login/reset/… HTTP/1.1"),
    }


def test_the_dev_server_logs_requests_without_query_strings_or_link_secrets(dev_server, captured, canaries):
    for path, (status, request_line) in canary_urls(canaries).items():
        answered, request_id = fetch(dev_server + path)
        assert answered == status, path
        (line,) = [line for line in captured.lines if line.startswith(f"{request_id} INFO werkzeug: ")]
        assert line == f'{request_id} INFO werkzeug: 127.0.0.1 "{request_line}" {status} -'
    assert canaries.found_in(captured.text) == []


# gunicorn (the README's command) ------------------------------------------------------------------


def test_gunicorn_access_lines_have_no_query_strings_or_link_secrets(
    database_url, tmp_path, key_material, canaries
):
    """gunicorn started as the README says (it reads gunicorn.conf.py), with an access log."""
    env = server_environment(database_url, tmp_path, key_material)
    options = ("--access-logfile", "-")
    with gunicorn(env, tmp_path, 1, options=options) as server:
        base = f"http://127.0.0.1:{server.port}"
        answers = {path: fetch(base + path) for path in canary_urls(canaries)}
    log = (tmp_path / "gunicorn.log").read_text()
    for path, (status, request_line) in canary_urls(canaries).items():
        answered, request_id = answers[path]
        assert answered == status, path
        lines = [line for line in log.splitlines() if line.endswith(f" {request_id}")]
        assert len(lines) == 1, (path, log)
        expected = rf'127\.0\.0\.1 - - \[[^\]]+\] "{re.escape(request_line)}" {status} \d+ \d+ms "[^"]*" '
        assert re.fullmatch(expected + request_id, lines[0]), lines[0]
    assert canaries.found_in(log) == []


# Request ids ----------------------------------------------------------------------------------------


def test_each_request_gets_its_own_id_and_a_client_cannot_choose_it(client):
    first, second = (
        client.get("/login"),
        client.get("/login", headers={"X-Request-Id": "chosen-by-the-client"}),
    )
    ids = [first.headers["X-Request-Id"], second.headers["X-Request-Id"]]
    assert [re.fullmatch(r"[0-9a-f]{16}", i) is not None for i in ids] == [True, True]
    assert ids[0] != ids[1]


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": 1}])
def test_a_trusted_proxys_request_id_is_kept_if_sane(client):
    kept = client.get("/login", headers={"X-Request-Id": "4f1c2d3e-0000-4bb1-9c2a-1d2e3f405060"})
    assert kept.headers["X-Request-Id"] == "4f1c2d3e-0000-4bb1-9c2a-1d2e3f405060"
    for insane in ["short", "has spaces in it ok", "x" * 65, "semi;colon-123456"]:
        replaced = client.get("/login", headers={"X-Request-Id": insane}).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", replaced), insane


def test_lines_outside_a_request_show_a_dash(app, captured):
    app.logger.warning("starting the nightly job")
    assert captured.lines[-1] == "- WARNING app: starting the nightly job"


SERVE_ONE_REQUEST = """
import sys
from app import create_app
app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": sys.argv[1],
                  "PATRON_KEY_MATERIAL": {"encryption_keys": {1: sys.argv[2]}, "blind_index_key": sys.argv[3],
                                          "source": "test"}})
app.logger.warning("before any request")
app.add_url_rule("/note", "note", lambda: app.logger.warning("inside a request") or "ok")
response = app.test_client().get("/note")
print(response.headers["X-Request-Id"])
"""


def test_the_app_log_format_shows_the_request_id_when_nothing_else_configured_logging(
    database_url, key_material, tmp_path
):
    """What `flask run`, a command or gunicorn get: LOG_FORMAT on standard error."""
    keys = [key_material["encryption_keys"][1], key_material["blind_index_key"]]
    env = {"PATH": "/usr/bin:/bin", "PATRON_INSTANCE_PATH": str(tmp_path / "instance")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST, database_url, *keys],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    request_id = done.stdout.strip()
    assert LOG_FORMAT == "[%(asctime)s] %(levelname)s [%(request_id)s] %(name)s: %(message)s"
    lines = done.stderr.splitlines()
    assert [re.sub(r"^\[[^\]]+\] ", "", line) for line in lines] == [
        "WARNING [-] app: before any request",
        f"WARNING [{request_id}] app: inside a request",
    ]
