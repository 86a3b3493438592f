"""Do the Chinese staff screens read as a product: labels, never stored codes or Flask-Admin's stock phrases?

Every admin page a role may open (lists, details, create and edit forms, custom pages) is rendered
for every role that may open it, with the staff language set to zh_Hans_CN, over a database holding
one real row of each kind (tests/test_access.py's world). A page fails when a cell, an option or a
filter option is exactly a stored code of a known enumeration (every *_LABELS key and enum value in
models/, every right), or "True" / "False" / "None", or holds a stock phrase of Flask-Admin's that we
replace. Missing Chinese for our English labels is not checked here: the catalogue is filled apart.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import re
from collections.abc import Iterator, Mapping
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_admin.babel import gettext as admin_gettext
from flask_admin.babel import ngettext as admin_ngettext
from flask_babel import force_locale
from flask_babel import gettext as _

import models
from models import db
from models.audit import action_label
from models.tickets.policy import Holiday
from models.uow import SYSTEM, unit_of_work
from models.user import RIGHTS, Role, StaffUser
from tests.conftest import csrf_token
from tests.test_access import (
    World,
    admin_views,
    collection_app,
    expected_roles,
    shared_world,
    staff_endpoints,
)

ZH = "zh_Hans_CN"
# Endpoints that are no page: downloads and Flask-Admin's ajax answers.
NOT_PAGES = ("export", "ajax_lookup", "ajax_update", "static")
# Stored codes that are also what a person reads in any language.
NOT_CODES = {""}


# Module-level names in models/ whose keys (or items) are the codes of an enumeration.
CODE_NAMES = ("_LABELS", "LANGUAGES", "_STATUSES", "_KINDS", "CHANNELS", "SCOPES")


# What counts as a code --------------------------------------------------------------------------
@cache
def known_codes() -> frozenset[str]:
    """Every code of an enumeration in models/: *_LABELS keys and the like, StrEnum values, rights."""
    codes: set[str] = set(RIGHTS)
    for info in pkgutil.walk_packages(models.__path__, "models."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.endswith(CODE_NAMES) and isinstance(value, Mapping | tuple):
                codes.update(str(key) for key in value if isinstance(key, str))
            elif isinstance(value, type) and issubclass(value, enum.StrEnum) and value is not enum.StrEnum:
                codes.update(member.value for member in value)
    return frozenset(codes - NOT_CODES)


def stock_phrases() -> list[str]:
    """Flask-Admin's own wording that we replace, as its catalogue says it in Chinese."""
    with force_locale(ZH):
        phrases = [
            admin_gettext("There are no items in the table."),
            admin_gettext("Record was successfully created."),
            admin_gettext("Record was successfully saved."),
            admin_ngettext(
                "Record was successfully deleted.", "%(count)s records were successfully deleted.", 1, count=1
            ),
        ]
    return [str(phrase) for phrase in phrases]


def page_size_phrase() -> re.Pattern:
    """Flask-Admin's "20 items" page size ("20 项目")."""
    with force_locale(ZH):
        items = str(admin_gettext("items"))
    return re.compile(rf"\b\d+\s*{re.escape(items)}")


# Reading a page ---------------------------------------------------------------------------------
TEXT_TAGS = {
    "td",
    "dd",
    "option",
    "span",
    "a",
    "button",
    "legend",
    "label",
    "small",
    "li",
    "p",
    "h1",
    "h2",
    "h3",
}
VOID_TAGS = {"input", "br", "img", "meta", "link", "hr", "col", "source", "wbr", "area", "base"}


class _Texts(HTMLParser):
    """The whole text of each element of TEXT_TAGS, and the filter options Flask-Admin keeps as JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, list[str], dict]] = []
        self.texts: list[tuple[str, str]] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        if tag not in VOID_TAGS:
            self.stack.append((tag, [], dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(self.skip - 1, 0)
        while self.stack:
            open_tag, parts, attrs = self.stack.pop()
            text = " ".join("".join(parts).split())
            if open_tag == "code":  # an identifier shown as such on purpose (a category's code)
                for _tag, _parts, outer in self.stack:
                    outer["shows code"] = True
            if open_tag in TEXT_TAGS and "shows code" not in attrs:
                self.texts.append((open_tag, text))
            if attrs.get("id") == "filter-groups-data":
                for group in json.loads("".join(parts)).values():
                    for flt in group:
                        self.texts += [
                            ("filter option", str(label)) for _v, label in flt.get("options") or ()
                        ]
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        for _tag, parts, _attrs in self.stack:
            parts.append(data)


def texts_of(html: str) -> list[tuple[str, str]]:
    reader = _Texts()
    reader.feed(html)
    reader.close()
    return reader.texts


def raw_texts(html: str) -> list[str]:
    """What a page shows that a person should never read: codes, True/False/None, stock phrases."""
    codes = known_codes()
    found = [
        f"{tag}: {text!r}"
        for tag, text in texts_of(html)
        if text in codes or text in ("True", "False", "None")
    ]
    found += [f"stock phrase: {phrase!r}" for phrase in stock_phrases() if phrase in html]
    found += [f"page size: {m.group(0)!r}" for m in page_size_phrase().finditer(html)]
    found += [
        f"inline heading: {text!r}"
        for tag, text in texts_of(html)
        if tag == "legend" and re.search(r"#\d+", text)
    ]
    return found


# The world, in Chinese --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory, migrated_database, key_material) -> Iterator[World]:
    with shared_world(tmp_path_factory.mktemp("zh"), migrated_database, key_material) as world:
        with world.app.app_context(), unit_of_work(SYSTEM) as uow:
            for user in uow.session.scalars(sa.select(StaffUser)):
                user.language = ZH
        yield world


@pytest.fixture
def world(shared: World) -> Iterator[World]:
    with shared.app.app_context():
        yield shared
        db.session.remove()


def pages() -> list:
    """Every GET page of every admin view (lists, details, forms, custom pages), one case each."""
    app = collection_app()
    return [
        pytest.param(endpoint, id=endpoint)
        for endpoint, (method, view) in staff_endpoints(app).items()
        if view is not None and method == "GET" and endpoint.partition(".")[2] not in NOT_PAGES
    ]


@pytest.mark.parametrize("endpoint", pages())
def test_chinese_page_shows_labels_not_codes(world, endpoint):
    """Does each role that may open this page see it in Chinese with no raw code on it?"""
    view = admin_views(world.app)[endpoint.partition(".")[0]]
    url = world.url(endpoint)
    problems: dict[str, list[str]] = {}
    for role in sorted(expected_roles(endpoint, view)):
        response = world.clients[role].get(url)
        assert response.status_code in (200, 302), f"{url} as {role}: {response.status_code}"
        assert "/login" not in (response.location or ""), f"{url}: {role} is not signed in"
        if response.status_code != 200 or response.mimetype != "text/html":
            continue  # a switched-off page sends back to the list, checked on its own; a download
        assert 'lang="zh-Hans"' in response.text, f"{url} as {role} is not in Chinese"
        found = raw_texts(response.text)
        if found:
            problems[role] = found
    assert problems == {}, f"{url}: {problems}"


SOURCES = ("admin", "models", "api", "surveys", "jobs", "insights", "cli.py", "cli_security.py", "app.py")
AUDIT_CALL = re.compile(r'\.audit\(\s*"([a-z_.]+)"')
AUDIT_ACTION = re.compile(r'action[^=\n]*= "([a-z_]+\.[a-z_]+)"')


def audit_actions_in_code() -> set[str]:
    """Every audit action written as a literal in the app's code."""
    root = Path(__file__).resolve().parents[1]
    found: set[str] = set()
    for source in SOURCES:
        path = root / source
        for file in [path] if path.is_file() else path.rglob("*.py"):
            text = file.read_text(encoding="utf-8")
            found.update(AUDIT_CALL.findall(text))
            found.update(AUDIT_ACTION.findall(text))
    return found


def test_every_audit_action_reads_as_words(world):
    """Does the audit log name every action it can hold in words, including each view's create/edit/delete?"""
    views = [v for v in admin_views(world.app).values() if hasattr(v, "audit_name")]
    actions = audit_actions_in_code() | {
        f"{view.audit_name()}.{verb}" for view in views for verb in ("create", "edit", "delete", "export")
    }
    assert len(actions) > 40
    with world.app.test_request_context(), force_locale(ZH):
        unlabelled = sorted(action for action in actions if action_label(action) == action)
    assert unlabelled == []


def test_known_codes_hold_the_codes_the_issue_saw():
    """Does the list of codes the screens are checked for hold those found on the Chinese screens?"""
    assert {"completed", "purchase", "pos", "zh_Hans_CN", "customer.list", "agent", "new"} <= known_codes()


def test_a_code_in_a_cell_is_caught_but_a_word_holding_it_is_not():
    """Is a code found as a whole cell text only, never as part of a word or a sentence?"""
    html = (
        "<table><tr><td>completed</td><td>Completed 3 orders</td><td>False</td><td>newest</td></tr></table>"
    )
    assert raw_texts(html) == ["td: 'completed'", "td: 'False'"]


# Flashes and empty lists ------------------------------------------------------------------------
def flashed(world: World, message: str, **values: str) -> str:
    """One of our flash messages as a Chinese-speaking member of staff reads it."""
    with world.app.test_request_context(), force_locale(ZH):
        return _(message, **values)


def test_saving_says_what_was_saved_in_our_words(world):
    """Does creating, editing and deleting a record flash a message naming it, not Flask-Admin's?"""
    admin = world.clients["admin"]
    form = {
        "csrf_token": csrf_token(admin.get("/admin/holidays/new/").text),
        "day": "2031-05-01",
        "name": "劳动节",
    }
    created = admin.post("/admin/holidays/new/", data=form, follow_redirects=True)
    holiday = db.session.scalar(sa.select(Holiday).where(Holiday.name == "劳动节"))
    name = str(holiday)
    edit_url = f"/admin/holidays/edit/?id={holiday.id}"
    form = {"csrf_token": csrf_token(admin.get(edit_url).text), "day": "2031-05-01", "name": "劳动节（调休）"}
    saved = admin.post(edit_url, data=form, follow_redirects=True)
    renamed = str(db.session.get(Holiday, holiday.id, populate_existing=True))
    listed = admin.get("/admin/holidays/").text
    form = {"csrf_token": csrf_token(listed), "id": str(holiday.id), "url": "/admin/holidays/"}
    deleted = admin.post("/admin/holidays/delete/", data=form, follow_redirects=True)

    assert flashed(world, "Created “%(name)s”.", name=name) in created.text
    assert flashed(world, "Saved “%(name)s”.", name=renamed) in saved.text
    assert flashed(world, "Deleted “%(name)s”.", name=renamed) in deleted.text
    for page in (created, saved, deleted):
        assert [p for p in stock_phrases() if p in page.text] == []


def test_an_empty_list_says_what_to_do_next(app, client, auth):
    """Does a list without rows say so and offer to create the first one, or to clear the search?"""
    auth.login(Role.ADMIN)
    with unit_of_work(SYSTEM) as uow:
        uow.session.execute(sa.update(StaffUser).values(language=ZH))
        uow.session.execute(sa.delete(Holiday))
    page = client.get("/admin/holidays/")
    searched = client.get("/admin/holidays/?search=zzz")
    with app.test_request_context(), force_locale(ZH):
        first, nothing = _("Add the first one"), _("Nothing here yet.")
        no_match = _("Nothing matches this search or these filters.")
    assert 'id="empty-state"' in page.text
    assert nothing in page.text and first in page.text
    assert 'href="/admin/holidays/new/' in page.text
    assert no_match in searched.text and nothing not in searched.text
