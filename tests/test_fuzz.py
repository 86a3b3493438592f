"""A bounded fuzz of every public form, the sign-in, the API and the admin screens: never a 5xx.

Hypothesis builds the requests: text in any script, lone surrogates and invalid UTF-8 (as raw
bytes, the way a hostile client sends them), NUL, huge and deeply nested values, wrong content
types, text fields sent as file parts, duplicate and unknown fields, odd methods; for the admin
screens (as a signed-in admin) odd query arguments (?id=1,2, page=-1, sort=, search=, flt…) and
odd bodies for every create and edit form. An answer of 500 or more fails, and so does any
exception escaping the app (TESTING propagates them).

The examples are the same on every run (derandomised), so CI is repeatable; set
PATRON_FUZZ_EXPLORE=1 to draw new ones, ten times as many.
"""

from __future__ import annotations

import json
import os
import re
import typing as t
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from models.api_key import SCOPES, create_api_key
from models.surveys.builder import Question, Survey, prepare_survey
from models.surveys.invitations import create_invitation
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.conftest import AuthActions, csrf_token, enrol_two_factor, make_staff
from tests.factories import make_customer, make_reward, make_ticket

EXPLORE = bool(os.environ.get("PATRON_FUZZ_EXPLORE"))

pytestmark = [
    # Werkzeug 3.1 answers a form field over its 500 kB limit with 413 mid-parse, and leaves a
    # file part it had already spooled (in memory, or on disk past 500 kB) to the garbage
    # collector, which closes it and warns.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function SpooledTemporaryFile.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=[0-9]+ mode='rb.'"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def fuzz(examples: int):
    """Hypothesis settings for one fuzz target: bounded, repeatable, writing no example database."""
    return settings(
        max_examples=examples * (10 if EXPLORE else 1),
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        # The app and its database are made once per test, not per example: that is the point.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# Limits far above the examples' count, so that every example reaches the code behind them. (Not
# RATELIMIT_ENABLED=False: Flask-Limiter 4.1 keeps that on its one shared instance, for the apps of
# the tests that follow.)
UNLIMITED = "100000 per minute"


@pytest.fixture
def app_config() -> dict:
    names = ["PUBLIC_FORM", "TRACKING", "SURVEY", "CONTACT_SEARCH"]
    free = {f"SIGN_IN_FREE_FAILURES_PER_{who}": 100_000 for who in ("ADDRESS", "ACCOUNT", "DEVICE")}
    return {f"{name}_RATE_LIMIT": UNLIMITED for name in names} | free


# Values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repeated:
    """A long value (`size` bytes), shown short when Hypothesis reports a failing example."""

    size: int

    def __repr__(self) -> str:
        return f"<{self.size} bytes>"


Raw = bytes | Repeated


def as_bytes(value: Raw) -> bytes:
    return b"x" * value.size if isinstance(value, Repeated) else value


PLAUSIBLE = [
    "complaint",
    "praise",
    "0",
    "5",
    "9",
    "10",
    "速度",
    "态度",
    "wang.fang@example.com",
    "+86 138 0013 8000",
    "王芳",
    "Where is my parcel?",
    "2026-12-01 10:00:00",
    "2026-12-01 09:00:00 to 2026-12-01 11:00:00",
]
ODD = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "1,2",
    "1.5",
    "-1",
    "99999999999999999999",
    "1e309",
    "NaN",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "2026-13-45",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%00",
    "\r\nX-Injected: 1",
    "\u202e\ufeff",
    "😀",
    "../../etc/passwd",
]
# What no browser sends as form text: a lone surrogate in CESU-8, invalid and overlong UTF-8.
BAD_BYTES = [b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\x80", b"\x80", b"a\xe4\xb8"]


def utf8(text: str) -> bytes:
    """Text as UTF-8 bytes; a lone surrogate (Hypothesis draws them) as its three CESU-8 bytes."""
    return text.encode("utf-8", "surrogatepass")


text_values = st.sampled_from(PLAUSIBLE + ODD).map(utf8)
raw_values: st.SearchStrategy[Raw] = st.one_of(
    text_values,
    st.text(max_size=80).map(utf8),
    st.sampled_from(BAD_BYTES),
    st.binary(max_size=40),
    # Longer than every field allows, and beyond Flask's 500 kB for one form field.
    st.sampled_from([Repeated(5_001), Repeated(70_000), Repeated(600_000)]),
)
url_values = st.one_of(text_values, st.text(max_size=40).map(utf8), st.sampled_from(BAD_BYTES))


def encoded_pairs(pairs: t.Iterable[tuple[bytes, Raw]]) -> str:
    """name=value&… percent-encoded from raw bytes, in order, duplicates kept."""
    return "&".join(f"{quote_from_bytes(name)}={quote_from_bytes(as_bytes(value))}" for name, value in pairs)


BOUNDARY = b"patron-fuzz-boundary"


def multipart(parts: t.Iterable[tuple[bytes, Raw, bool]]) -> bytes:
    """A multipart/form-data body; parts with the flag set are sent as files."""
    chunks = []
    for name, value, as_file in parts:
        disposition = b'form-data; name="' + name + b'"'
        if as_file:
            disposition += b'; filename="note.txt"\r\nContent-Type: text/plain'
        chunks.append(b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n")
        chunks.append(as_bytes(value) + b"\r\n")
    return b"".join([*chunks, b"--" + BOUNDARY + b"--\r\n"])


# Any JSON, strings with lone surrogates included (json.dumps escapes them as \ud800).
json_text = st.text(st.characters(codec=None), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class Body:
    """A request body as sent: raw bytes and a content type (None: no header)."""

    data: bytes
    content_type: str | None

    def __repr__(self) -> str:
        shown = repr(self.data[:300]) + (f" … ({len(self.data)} bytes)" if len(self.data) > 300 else "")
        return f"Body({shown}, {self.content_type!r})"


def form_bodies(fields: list[bytes], csrf: str) -> st.SearchStrategy[Body]:
    """Bodies for a form with these field names, mostly carrying the page's valid CSRF token."""
    names = st.sampled_from(fields) | st.text(max_size=12).map(utf8)
    token = st.sampled_from([csrf.encode(), csrf.encode(), csrf.encode(), b"", b"wrong"])
    parts = st.lists(st.tuples(names, raw_values, st.booleans()), max_size=8)
    # The token itself sent as a file part one time in four.
    csrf_parts = st.tuples(st.just(b"csrf_token"), token, st.sampled_from([False, False, False, True]))
    encodings = st.sampled_from(["urlencoded", "urlencoded", "multipart", "multipart", "other"])

    def body(encoding: str, csrf_part: tuple, chosen: list) -> st.SearchStrategy[Body]:
        if encoding == "urlencoded":
            pairs = [(name, value) for name, value, _file in [csrf_part, *chosen]]
            return st.just(Body(encoded_pairs(pairs).encode(), "application/x-www-form-urlencoded"))
        if encoding == "multipart":
            content_type = f"multipart/form-data; boundary={BOUNDARY.decode()}"
            return st.just(Body(multipart([csrf_part, *chosen]), content_type))
        return other_bodies

    return st.tuples(encodings, csrf_parts, parts).flatmap(lambda drawn: body(*drawn))


other_bodies = st.one_of(
    st.builds(Body, json_values.map(lambda v: json.dumps(v).encode()), st.just("application/json")),
    st.builds(
        Body, st.sampled_from([nested(17), nested(1_000), nested(10_000)]), st.just("application/json")
    ),
    st.builds(
        Body,
        st.binary(max_size=60) | st.sampled_from(BAD_BYTES),
        st.sampled_from(
            [
                None,
                "application/json",
                "application/json; charset=latin-1",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "application/xml",
                "*/*",
            ]
        ),
    ),
)
methods = st.sampled_from(
    ["POST", "POST", "POST", "POST", "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]
)


def sending(method: str, path: str, body: Body | None = None):
    """Note the request for the report of a failing example (Hypothesis prints its arguments empty)."""
    note(f"{method} {path}" + (f" {body!r}" if body is not None else ""))


def assert_no_server_error(response, method: str, path: str) -> None:
    assert response.status_code < 500, f"{method} {path} answered {response.status}"


# Public forms and the sign-in -------------------------------------------------------------------


@pytest.fixture
def survey_paths(app) -> dict[str, list[bytes]]:
    """A survey of every question kind, checked by the builder's rules; its two links."""
    survey = Survey(title="Fuzz", language="en", public_link=True, public_slug="fuzz")
    survey.questions = [
        Question(kind="nps", prompt="How likely?", required=True),
        Question(kind="rating", prompt="How satisfied?", required=True),
        Question(kind="single", prompt="Which shop?", options="速度\n态度", required=False),
        Question(kind="multiple", prompt="What went well?", options="速度\n态度\n价格", required=False),
        Question(kind="text", prompt="Anything else?", required=False),
    ]
    customer = make_customer()
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
        prepare_survey(survey)
        uow.session.flush()
        _invitation, token = create_invitation(survey, customer.id)
    fields = [f"q{question.id}".encode() for question in survey.questions]
    fields += [b"submission_key", b"website"]
    return {"/p/fuzz": fields, f"/s/{token}": fields}


FEEDBACK_FIELDS = [b"kind", b"message", b"name", b"email", b"phone", b"website"]
LOGIN_FIELDS = [b"email", b"password", b"submit"]
SECOND_FACTOR_FIELDS = [b"code", b"trust", b"submit"]


def fuzz_form(client, path: str, fields: list[bytes], examples: int) -> None:
    """Send a form's page odd bodies (with its own valid CSRF token mostly): no 5xx."""
    page = client.get(path)
    assert page.status_code == 200, f"GET {path} answered {page.status}"
    answered: set[int] = set()

    @fuzz(examples)
    @given(method=methods, body=form_bodies(fields, csrf_token(page.text)))
    def sent(method: str, body: Body) -> None:
        sending(method, path, body)
        response = client.open(path, method=method, data=body.data, content_type=body.content_type)
        assert_no_server_error(response, method, path)
        answered.add(response.status_code)

    sent()
    # Not only refusals at the door (no CSRF token, wrong method, too large): the form's own checks ran.
    assert answered - {400, 405, 413}, f"{path}: every request was refused before the form ({answered})"


def test_the_feedback_form_never_answers_a_server_error(client):
    """Does /feedback answer every odd request with a page or a 4xx, never a 5xx?"""
    fuzz_form(client, "/feedback", FEEDBACK_FIELDS, examples=150)


def test_the_survey_pages_never_answer_a_server_error(client, survey_paths):
    """Do the anonymous and the personal survey links answer every odd request without a 5xx?"""
    for path, fields in survey_paths.items():
        fuzz_form(client, path, fields, examples=100)


def test_the_sign_in_never_answers_a_server_error(client):
    """Does /login answer every odd request with a page or a 4xx, never a 5xx?"""
    fuzz_form(client, "/login", LOGIN_FIELDS, examples=150)


def test_the_second_factor_steps_never_answer_a_server_error(app, client, auth):
    """Do the code step and the enrolment step of the sign-in answer odd requests without a 5xx?"""
    app.config["TWO_FACTOR_REQUIRED_ROLES"] = ["admin", "manager"]
    enrol_two_factor(make_staff(Role.ADMIN))
    assert auth.login(Role.ADMIN).location == "/login/code"
    fuzz_form(client, "/login/code", SECOND_FACTOR_FIELDS, examples=100)
    enrolling = app.test_client()
    assert AuthActions(enrolling).login(Role.MANAGER).location == "/login/enrol"
    fuzz_form(enrolling, "/login/enrol", SECOND_FACTOR_FIELDS, examples=100)


def test_the_tracking_pages_never_answer_a_server_error(client):
    """Do the tracking lookup (/track?code=) and the tracking page (/track/<code>) stay under 500?"""
    _ticket, code = make_ticket()
    names = st.sampled_from([b"code", b"lang", b"next"]) | st.text(max_size=8).map(utf8)

    @fuzz(100)
    @given(
        pairs=st.lists(st.tuples(names, url_values), max_size=4),
        segment=url_values | st.just(code.encode()),
    )
    def looked_up(pairs, segment: bytes) -> None:
        query = encoded_pairs(pairs)
        path = "/track/" + quote_from_bytes(segment, safe="")
        sending("GET", f"/track?{query} and {path}")
        assert_no_server_error(client.get("/track", query_string=query), "GET", f"/track?{query}")
        assert_no_server_error(client.get(path), "GET", path)

    looked_up()


# The API ----------------------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Three times in four the usual value, else an odd one: requests get past the first check."""
    return st.integers(0, 3).flatmap(lambda n: odd if n == 0 else usual)


def api_operations(member_no: str) -> st.SearchStrategy[tuple[str, str, Body | None]]:
    """(method, path, body) of every API operation, mostly well-formed, with odd parts."""
    member = mostly(st.sampled_from([member_no, "M00000000"]), json_text)
    order_ref = mostly(st.sampled_from(["A-1", "A-2", "B-1"]), json_text)
    purchase = st.fixed_dictionaries(
        {
            "customer": mostly(st.fixed_dictionaries({"member_no": member}), json_values),
            "order_ref": order_ref,
            "amount": mostly(st.sampled_from(["1.00", "128.50", "0", "12.345"]), json_values),
            "currency": mostly(st.just("CNY"), json_values),
        },
        optional={
            "channel": mostly(st.sampled_from(["store", "web", None]), json_values),
            "purchased_at": mostly(
                st.sampled_from(["2026-01-01T10:00:00+08:00", "0001-01-01T00:00+08:00", "2026-01-01"]),
                json_values,
            ),
        },
    )
    redemption = st.fixed_dictionaries(
        {"member_no": member, "reward_id": mostly(st.sampled_from([1, 2, 2**31]), json_values)}
    )

    def json_body(document: st.SearchStrategy) -> st.SearchStrategy[Body]:
        sent = mostly(document, json_values).map(lambda value: json.dumps(value).encode())
        return mostly(st.builds(Body, sent, st.just("application/json")), other_bodies)

    def segment(usual: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return mostly(usual.map(utf8), url_values).map(lambda raw: quote_from_bytes(raw, safe=""))

    no_body = st.none() | other_bodies
    return st.one_of(
        st.tuples(st.just("POST"), st.just("/api/v1/purchases"), json_body(purchase)),
        st.tuples(st.just("POST"), st.just("/api/v1/redemptions"), json_body(redemption)),
        st.tuples(
            st.just("POST"), segment(order_ref).map(lambda ref: f"/api/v1/purchases/{ref}/refund"), no_body
        ),
        st.tuples(st.just("GET"), segment(member).map(lambda no: f"/api/v1/customers/{no}/points"), no_body),
        st.tuples(st.just("GET"), st.sampled_from(["/api/v1/rewards", "/api/v1/ping"]), no_body),
    )


def test_the_api_never_answers_a_server_error(client):
    """Does every API operation answer odd bodies, paths, methods and content types without a 5xx?"""
    member_no = make_customer().member_no
    make_reward(points_cost=1)
    with unit_of_work(SYSTEM):
        _key, key = create_api_key("Fuzz", "fuzz", sorted(SCOPES))
    headers = {"Authorization": f"Bearer {key}"}

    @fuzz(300)
    @given(operation=api_operations(member_no), method=mostly(st.none(), methods))
    def called(operation: tuple[str, str, Body | None], method: str | None) -> None:
        usual_method, path, body = operation
        method = method or usual_method
        body = body or Body(b"", None)
        sending(method, path, body)
        response = client.open(
            path, method=method, data=body.data, content_type=body.content_type, headers=headers
        )
        assert_no_server_error(response, method, path)

    called()


# The admin pages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminPage:
    """One admin screen and the query arguments its list understands."""

    path: str
    arguments: tuple[str, ...]

    def __repr__(self) -> str:
        return self.path


LIST_ARGUMENTS = ("page", "page_size", "sort", "desc", "search", "id", "url", "modal", "lang")


def admin_pages(app) -> list[AdminPage]:
    """Every screen of every admin view: the list, details, edit, create and export of model views."""
    pages = []
    for view in app.extensions["admin"][0]._views:
        filters = [f"flt{i}_{key}" for key in getattr(view, "_filter_args", None) or {} for i in (0, 1)]
        arguments = LIST_ARGUMENTS + tuple(filters)
        screens = ["/"]
        if hasattr(view, "model"):
            screens += ["/details/", "/edit/", "/new/", "/export/csv/"]
        base = view.url.rstrip("/")
        pages += [AdminPage(base + screen, arguments) for screen in screens]
    return pages


def test_the_admin_pages_never_answer_a_server_error(app, client, auth):
    """Does every admin screen answer odd query arguments (as a signed-in admin) without a 5xx?"""
    make_customer()
    make_ticket()
    make_reward()
    auth.login()
    home = client.get("/admin/")
    assert home.status_code == 200, f"the admin is not signed in for the fuzz: /admin/ answered {home.status}"
    pages = admin_pages(app)
    number_like = st.integers().map(lambda n: str(n).encode()) | st.sampled_from([b"1", b"1,2", b"-1", b"0"])

    def with_arguments(page: AdminPage) -> st.SearchStrategy[tuple[AdminPage, str]]:
        names = st.sampled_from(page.arguments).map(utf8) | st.text(max_size=8).map(utf8)
        pairs = st.lists(st.tuples(names, url_values | number_like), max_size=5)
        return st.tuples(st.just(page), pairs.map(encoded_pairs))

    @fuzz(500)
    @given(request=st.sampled_from(pages).flatmap(with_arguments))
    def opened(request: tuple[AdminPage, str]) -> None:
        page, query = request
        sending("GET", f"{page.path}?{query}")
        response = client.get(page.path, query_string=query)
        assert_no_server_error(response, "GET", f"{page.path}?{query}")
        if "/login" in (response.location or ""):  # `url=/login` is followed too: check
            assert client.get("/admin/").status_code == 200, "the admin was signed out during the fuzz"

    opened()


def form_targets(client, pages: list[AdminPage]) -> list[tuple[str, list[bytes], str]]:
    """(URL, field names, CSRF token) of every create and edit form an admin can open.

    Not the staff screens: a fuzzed edit of one's own account may rightly sign one out.
    """
    targets = []
    for page in pages:
        if page.path.startswith("/admin/staff/") or not page.path.endswith(("/new/", "/edit/")):
            continue
        url = page.path + ("?id=1" if page.path.endswith("/edit/") else "")
        response = client.get(url)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            names = sorted(set(re.findall(r'name="([^"]+)"', response.text)) - {"csrf_token"})
            targets.append((url, [name.encode() for name in names], csrf_token(response.text)))
    return targets


def test_the_admin_forms_never_answer_a_server_error(app, client, auth):
    """Does every admin create and edit form answer odd bodies (as a signed-in admin) without a 5xx?"""
    make_customer()
    make_ticket()
    make_reward()
    auth.login()
    targets = form_targets(client, admin_pages(app))
    assert len(targets) >= 10, f"only {len(targets)} admin forms found"

    @fuzz(300)
    @given(data=st.data())
    def posted(data) -> None:
        url, fields, token = data.draw(st.sampled_from(targets))
        body = data.draw(form_bodies(fields, token))
        sending("POST", url, body)
        response = client.post(url, data=body.data, content_type=body.content_type)
        assert_no_server_error(response, "POST", url)

    posted()
