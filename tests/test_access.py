"""Who may open what: every admin endpoint and the staff sign-in pages, for every role and for anonymous.

"Allowed" comes from RIGHTS (models/user.py) and each view's `right` and `endpoint_rights`, never from
the answers. What an allowed member of staff then gets follows from the view's own switches
(`can_create`, `can_edit`, ...), as Flask-Admin 2.2.1 answers them (see `stock_answer`).

One database and one signed-in client per role serve the whole module (a fresh app per case would
take minutes): every case creates what it changes, and the matrix itself changes nothing another
case reads (its GETs add audit rows, its POSTs carry no form). tests/test_admin_posts.py reuses it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from flask.testing import FlaskClient
from flask_login import login_user

from admin.base import StaffAccess
from app import create_app
from models import db
from models.crypto import new_key
from models.uow import SYSTEM, unit_of_work
from models.user import Role, StaffUser, role_has
from tests.conftest import AuthActions, IsolatedClient, base_config, fresh_database, make_staff
from tests.factories import make_customer, make_reward, make_ticket

ROLES = [r.value for r in Role]
IDENTITIES = [*ROLES, "anonymous"]
EVERYONE = set(ROLES)
PII_ROLES = {"admin", "manager", "agent"}
SIGN_IN = "staff_auth"

# Written out by hand for the views that exist today, so that a wrong declaration on a view
# is caught too. Views added later are checked against their own declarations below.
WORKERS = PII_ROLES
EXPECTED = {
    "tickets.index_view": EVERYONE,
    "tickets.ticket_page": EVERYONE,
    "tickets.reply": WORKERS,
    "tickets.move": WORKERS,
    "tickets.update": WORKERS,
    "tickets.action_view": WORKERS,
    "tickets.create_view": WORKERS,
    "tickets.bulk_assign": WORKERS,
    "tickets.take": WORKERS,
    "tickets.finish": WORKERS,
    "tickets.attachment": PII_ROLES,
    "canned_replies.index_view": {"admin", "manager"},
    "canned_replies.create_view": {"admin", "manager"},
    "tickets_overdue.index_view": EVERYONE,
    "purchases.index_view": EVERYONE,
    "purchases.create_view": WORKERS,
    "purchases.action_view": {"admin", "manager"},
    "ledger.index_view": EVERYONE,
    "ledger.export": {"admin", "manager"},
    "rewards.index_view": EVERYONE,
    "rewards.create_view": {"admin", "manager"},
    "redemptions.action_view": WORKERS,
    "promotions.index_view": {"admin", "manager"},
    "purchase_import.index": {"admin", "manager"},
    "customers.adjust_points": {"admin", "manager"},
    "customers.redeem": WORKERS,
    "customers.coupon": WORKERS,
    "search.index": EVERYONE,
    "tickets_mine.index_view": EVERYONE,
    "admin.index": EVERYONE,
    "account.index": EVERYONE,
    "customers.index_view": EVERYONE,
    "customers.details_view": EVERYONE,
    "customers.create_view": PII_ROLES,
    "customers.edit_view": PII_ROLES,
    "customers.delete_view": {"admin", "manager"},
    "customers.action_view": PII_ROLES,
    "survey_builder.index_view": EVERYONE,
    "survey_builder.create_view": {"admin", "manager"},
    "survey_builder.edit_view": {"admin", "manager"},
    "survey_results.results": EVERYONE,
    "survey_results.export": {"admin", "manager", "analyst"},
    "survey_invite.index": PII_ROLES,
    "survey_invitations.index_view": EVERYONE,
    "survey_invitations.action_view": PII_ROLES,
    "customers.export": {"admin", "manager", "analyst"},
}
ADMIN_ONLY_PREFIXES = (
    "tiers.",
    "earning_rule.",
    "api_keys.",
    "staff.",
    "audit.",
    "ticket_categories.",
    "sla_policies.",
    "business_hours.",
    "holidays.",
    "jobs.",
)

# Arguments of URL rules, filled with the world's real objects.
RULE_ARGUMENTS = {
    "customer_id": "customer",
    "ticket_id": "ticket",
    "survey_id": "survey",
    "session_id": "staff_session",
    "attachment_id": "attachment",
    "redemption_id": "redemption",
}
# Query strings that custom pages need to show something (their form, for the objects named).
PAGE_QUERIES = {"bulk_assign": {"ids": "ticket"}, "bulk_priority": {"ids": "ticket"}}
# Flask-Admin's own pages that a view can switch off; switched off, they send back to the list.
SWITCHED = {
    "create_view": "can_create",
    "edit_view": "can_edit",
    "details_view": "can_view_details",
    "export": "can_export",
}
SWITCHES = (*SWITCHED.values(), "can_delete")

# (endpoint, identity) -> why the answer is wrong today; each is an xfail(strict=True) case.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


# The app, its views and endpoints ------------------------------------------------------------
@cache
def collection_app() -> Flask:
    """An app built only to read its URL map and views while the tests are collected."""
    directory = Path(tempfile.mkdtemp(prefix="patron-collect-"))
    atexit.register(shutil.rmtree, directory, True)
    keys = {"encryption_keys": {1: new_key()}, "blind_index_key": new_key(), "source": "test"}
    return create_app(base_config(directory, f"sqlite:///{directory / 'unused.sqlite'}", keys))


def admin_views(app: Flask) -> dict[str, StaffAccess]:
    """Every Flask-Admin view of the app by its endpoint."""
    return {view.endpoint: view for admin in app.extensions["admin"] for view in admin._views}


@cache
def staff_endpoints(app: Flask) -> dict[str, tuple[str, StaffAccess | None]]:
    """endpoint -> (method, view) for every rule under /admin and of the sign-in pages.

    The method is GET where the rule takes it (its page), else POST; the sign-in pages have no view.
    """
    views = admin_views(app)
    found: dict[str, tuple[str, StaffAccess | None]] = {}
    for rule in app.url_map.iter_rules():
        prefix, _, name = rule.endpoint.partition(".")
        if (prefix in views and name != "static") or prefix == SIGN_IN:
            method = "GET" if "GET" in (rule.methods or ()) else "POST"
            found[rule.endpoint] = (method, views.get(prefix))
    return dict(sorted(found.items()))


def expected_roles(endpoint: str, view: StaffAccess) -> set[str]:
    """Roles that may use an endpoint, according to the view's own declaration."""
    name = endpoint.partition(".")[2]
    extra = view.endpoint_rights.get(name)
    return {r for r in ROLES if role_has(r, view.right) and (extra is None or role_has(r, extra))}


# Forms as a browser would send them ------------------------------------------------------------
@dataclass
class Form:
    """A form found in a page: where it posts and the values a browser would send unchanged."""

    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def values(self, **changes: str | list[str]) -> dict[str, str | list[str]]:
        """The form's values with some changed (a list for a field sent several times)."""
        data: dict[str, str | list[str]] = {}
        for name, value in self.fields:
            data[name] = [*data[name], value] if isinstance(data.get(name), list) else value
        return data | changes


class _FormReader(HTMLParser):
    """Collects each <form> and its fields; submit buttons and files are left to the test."""

    def __init__(self, page_path: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_path = page_path
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: tuple[str, bool, list[tuple[str, bool]]] | None = None
        self._option: list | None = None
        self._textarea: list | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v if v is not None else "" for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action") or self.page_path)
            self.forms.append(self._form)
        elif self._form is None or ("name" not in a and tag != "option"):
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form.fields.append((a["name"], a.get("value", "on")))
            elif kind not in ("submit", "button", "image", "file", "reset"):
                self._form.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select = (a["name"], "multiple" in a, [])
        elif tag == "option" and self._select is not None:
            self._option = [a.get("value"), "selected" in a, ""]
        elif tag == "textarea":
            self._textarea = [a["name"], ""]

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None and self._select is not None:
            value, selected, text = self._option
            self._select[2].append((text.strip() if value is None else value, selected))
            self._option = None
        elif tag == "select" and self._select is not None and self._form is not None:
            name, multiple, options = self._select
            chosen = [v for v, selected in options if selected]
            if not chosen and not multiple and options:
                chosen = [options[0][0]]  # what a browser sends for a single select
            self._form.fields += [(name, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            name, text = self._textarea
            # A browser drops the newline that opens a textarea (WTForms writes CR LF there).
            self._form.fields.append((name, text.removeprefix("\r\n").removeprefix("\n")))
            self._textarea = None
        elif tag == "form":
            self._form = None


def forms_in(html: str, page_path: str = "") -> list[Form]:
    """Every form of a page."""
    reader = _FormReader(page_path)
    reader.feed(html)
    return reader.forms


def page_form(client: FlaskClient, page: str, action: str | None = None, **must: str) -> Form:
    """The form on a page that posts to `action` (the page if None) and has these values."""
    response = client.get(page)
    assert response.status_code == 200, f"{page}: {response.status_code}"
    target = (action or page).partition("?")[0]
    for form in forms_in(response.text, page.partition("?")[0]):
        values = dict(form.fields)
        if form.action.partition("?")[0] == target and all(values.get(k) == v for k, v in must.items()):
            return form
    raise AssertionError(f"no form posting to {target} with {must} on {page}")


# One shared world ----------------------------------------------------------------------------
@dataclass
class World:
    """The module's app and database, a signed-in client per role, and one object of each kind."""

    app: Flask
    clients: dict[str, FlaskClient]
    staff_ids: dict[str, int]
    ids: dict[str, int]

    @property
    def views(self) -> dict[str, StaffAccess]:
        return admin_views(self.app)

    def first_id(self, model: type) -> int:
        """The id of the oldest row of a model; the world makes one of each."""
        found = db.session.scalar(sa.select(model.id).order_by(model.id).limit(1))
        assert found is not None, f"the world has no {model.__name__}: make one in populate()"
        return found

    def url(self, endpoint: str) -> str:
        """The endpoint's URL, naming real objects where the rule or the page needs them."""
        (rule,) = self.app.url_map.iter_rules(endpoint)
        prefix, _, name = endpoint.partition(".")
        values: dict[str, object] = {}
        for argument in rule.arguments:
            if argument == "export_type":
                values[argument] = "csv"
            elif argument == "token":  # a password reset link's: no such link
                values[argument] = "no-such-link"
            else:
                assert argument in RULE_ARGUMENTS, f"{endpoint}: which object is <{argument}>?"
                values[argument] = self.ids[RULE_ARGUMENTS[argument]]
        if name in ("edit_view", "details_view"):
            values["id"] = self.first_id(self.views[prefix].model)
        for key, kind in PAGE_QUERIES.get(name, {}).items():
            values[key] = self.ids[kind]
        with self.app.test_request_context():
            return url_for(endpoint, **values)


@contextmanager
def signed_in_as(app: Flask, role: str) -> Iterator[None]:
    """A request context in which an (unsaved) member of staff of this role is signed in."""
    with app.app_context(), app.test_request_context():  # a g of its own for Flask-Login
        login_user(StaffUser(email=f"{role}@example.com", role=role, active=True, session_version=1))
        yield


@cache
def switches(app: Flask, endpoint: str, role: str) -> dict[str, bool]:
    """A model view's switches (can_create, ...) as they stand for a member of staff of this role."""
    view = admin_views(app)[endpoint]
    with signed_in_as(app, role):
        return {name: bool(getattr(view, name, False)) for name in SWITCHES}


@cache
def may_act(app: Flask, endpoint: str, action: str, role: str) -> bool:
    """Whether a role may run one list action: the action endpoint's right and the action's own."""
    view = admin_views(app)[endpoint]
    if role not in expected_roles(f"{endpoint}.action_view", view):
        return False
    with signed_in_as(app, role):
        return bool(view.is_action_allowed(action))


def populate() -> dict[str, int]:
    """One real object of each kind an admin URL names, made through the domain as the system."""
    from jobs import run_due_jobs
    from models.api_key import create_api_key
    from models.loyalty.programme import Promotion
    from models.loyalty.purchases import NewPurchase, record_purchase
    from models.loyalty.rewards import redeem
    from models.surveys.builder import Question, Survey
    from models.surveys.invitations import invite_customers
    from models.tickets.attachments import check_upload
    from models.tickets.canned import CannedReply
    from models.tickets.policy import Holiday
    from models.tickets.ticket import add_message

    customer = make_customer()
    ticket, _code = make_ticket(customer_id=customer.id)
    reward = make_reward()
    with unit_of_work(SYSTEM):
        spec = NewPurchase(customer.id, "admin", "WORLD-1", Decimal("880.00"), "CNY")
        purchase = record_purchase(spec).purchase
    with unit_of_work(SYSTEM):
        redemption = redeem(customer.id, reward.id).redemption
    with unit_of_work(SYSTEM) as uow:
        question = Question(position=1, kind="nps", prompt="Would you recommend us?")
        survey = uow.add(Survey(title="After the visit", language="en", questions=[question]))
        uow.add(Holiday(day=date(2030, 10, 1), name="National Day"))
        window = {"starts_at": datetime(2030, 1, 1, tzinfo=UTC), "ends_at": datetime(2030, 2, 1, tzinfo=UTC)}
        uow.add(Promotion(name="Double points", multiplier=Decimal("2.00"), **window))
    with unit_of_work(SYSTEM):
        ((invitation, _token),) = invite_customers(survey, [customer.id])
        key, _text = create_api_key("Till", "pos", ["purchases:write"])
    with unit_of_work(SYSTEM) as uow:
        uow.add(CannedReply(title="Thanks", language="en", body="Thank you!"))
        call_notes = check_upload("call.txt", b"Called at 14:05")
        note = add_message(ticket, "note", "Call notes attached", files=[call_notes])
    attachment_id = note.attachments[0].id
    assert run_due_jobs()  # so that the Jobs screen shows real runs
    from models.staff_session import start_staff_session

    owner = make_staff(Role.AGENT, "sessions@test.example")
    with unit_of_work(SYSTEM):
        staff_session, _token = start_staff_session(owner, None, None)
    return {
        "customer": customer.id,
        "ticket": ticket.id,
        "reward": reward.id,
        "purchase": purchase.id,
        "redemption": redemption.id,
        "survey": survey.id,
        "invitation": invitation.id,
        "api_key": key.id,
        "staff_session": staff_session.id,
        "attachment": attachment_id,
    }


@contextmanager
def shared_world(directory: Path, migrated_database: tuple, key_material: dict) -> Iterator[World]:
    """Build the module's world: a migrated database, staff of each role signed in, real objects."""
    url = fresh_database(migrated_database, directory)
    app = create_app(base_config(directory, url, key_material))
    app.test_client_class = IsolatedClient
    with app.app_context():
        clients = {"anonymous": app.test_client()}
        for role in ROLES:
            clients[role] = app.test_client()
            assert AuthActions(clients[role]).login(role).status_code == 302
        world = World(app, clients, {role: make_staff(role).id for role in ROLES}, populate())
        db.session.remove()
    try:
        yield world
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, migrated_database, key_material) -> Iterator[World]:
    with shared_world(tmp_path_factory.mktemp("access"), migrated_database, key_material) as world:
        yield world


@pytest.fixture
def world(shared: World) -> Iterator[World]:
    """The shared world, with an app context of its own for the test body."""
    with shared.app.app_context():
        yield shared
        db.session.remove()


# The exact answers ---------------------------------------------------------------------------
Answer = tuple[int, str | None]  # status, and where a redirect goes (path and decoded query)


def where(location: str | None) -> str | None:
    """A redirect's target as path?query, decoded, whatever the host."""
    if not location:
        return None
    parts = urlsplit(location)
    return parts.path + (f"?{unquote(parts.query)}" if parts.query else "")


def stock_answer(view: StaffAccess, name: str, on: dict[str, bool]) -> Answer | None:
    """What Flask-Admin 2.2.1 (flask_admin/model/base.py) answers an allowed member of staff.

    A page the view has switched off redirects to the list by design; the delete and action
    endpoints, reached without their form, flash "failed" and redirect to the list; the ajax
    endpoints answer 404 when the view declares no ajax lookups / editable columns. None: not one
    of Flask-Admin's own endpoints.
    """
    back = url_for(f"{view.endpoint}.index_view")
    if name == "index_view":
        return 200, None
    if name in SWITCHED:
        return (200, None) if on[SWITCHED[name]] else (302, back)
    if name in ("delete_view", "action_view"):
        return 302, back
    if name == "ajax_lookup" and not getattr(view, "_form_ajax_refs", None):
        return 404, None
    if name == "ajax_update" and not getattr(view, "column_editable_list", None):
        return 404, None
    return None


def expected_answer(world: World, endpoint: str, identity: str) -> Answer:
    """The one right answer for this endpoint and identity, derived from rights and switches."""
    method, view = staff_endpoints(world.app)[endpoint]
    if view is None:  # the sign-in pages
        if endpoint == f"{SIGN_IN}.login":
            return (200, None) if identity == "anonymous" else (302, "/admin/")
        if endpoint == f"{SIGN_IN}.forgot_password":
            return (200, None) if identity == "anonymous" else (302, "/admin/account/")
        if endpoint == f"{SIGN_IN}.reset_with_link":
            return 410, None  # an unknown link, whoever opens it
        if endpoint in (f"{SIGN_IN}.second_factor", f"{SIGN_IN}.enrol"):
            # Steps of a sign-in in progress: without one they send back to its start.
            return (302, "/login") if identity == "anonymous" else (302, "/admin/")
        return 400, None  # sign-out without its token
    if identity == "anonymous":
        return 302, f"/login?next={world.url(endpoint)}"
    if identity not in expected_roles(endpoint, view):
        return 403, None
    name = endpoint.partition(".")[2]
    with world.app.test_request_context():
        on = switches(world.app, view.endpoint, identity) if hasattr(view, "model") else {}
        stock = stock_answer(view, name, on) if on else None
    if stock is not None:
        return stock
    # Our own pages show 200; our own POST endpoints refuse a form without its CSRF token (400).
    return (200, None) if method == "GET" else (400, None)


def matrix() -> list:
    """(endpoint, identity) cases, the known bugs marked as strict xfails."""
    cases = []
    for endpoint in staff_endpoints(collection_app()):
        for identity in IDENTITIES:
            reason = KNOWN_BUGS.get((endpoint, identity))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(endpoint, identity, marks=marks, id=f"{endpoint}-{identity}"))
    return cases


# The tests -----------------------------------------------------------------------------------
def test_every_admin_view_uses_the_staff_access_base():
    for view in admin_views(collection_app()).values():
        assert isinstance(view, StaffAccess), f"{view.endpoint} bypasses the role checks"


def test_declarations_match_the_written_rights():
    endpoints = staff_endpoints(collection_app())
    assert len(endpoints) > 200
    for endpoint, (_method, view) in endpoints.items():
        if view is None:
            continue
        declared = expected_roles(endpoint, view)
        if endpoint in EXPECTED:
            assert declared == EXPECTED[endpoint], endpoint
        if endpoint.startswith(ADMIN_ONLY_PREFIXES):
            assert declared == {"admin"}, endpoint


def test_editing_in_the_list_would_need_the_right_to_edit():
    """Could a role edit through ajax_update what its edit_view refuses? Not while this holds."""
    for view in admin_views(collection_app()).values():
        if getattr(view, "column_editable_list", None):
            rights = view.endpoint_rights
            assert rights.get("ajax_update") == rights.get("edit_view"), view.endpoint


@pytest.mark.parametrize(("endpoint", "identity"), matrix())
def test_each_identity_gets_exactly_the_answer_its_rights_give(world, endpoint, identity):
    method, _view = staff_endpoints(world.app)[endpoint]
    response = world.clients[identity].open(world.url(endpoint), method=method)
    answer = (response.status_code, where(response.location) if response.status_code in (301, 302) else None)
    assert answer == expected_answer(world, endpoint, identity)


@pytest.mark.parametrize("role", ["manager", "agent", "analyst"])
def test_menu_hides_what_a_role_cannot_open(world, role):
    page = world.clients[role].get("/admin/").text
    assert ("/admin/audit/" in page) is False
    assert ("/admin/staff/" in page) is False
    assert "/admin/customers/" in page


def test_admin_sees_settings_in_the_menu(world):
    page = world.clients["admin"].get("/admin/").text
    assert "/admin/audit/" in page and "/admin/staff/" in page
