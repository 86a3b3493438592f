"""Finding a customer by exact full name: a blind index on the normalised name, kept on every
write, filled for existing rows by the migration, audited and limited like a contact look-up,
and refused to analysts."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

import config
from models import db
from models.contact import normalise_name
from models.crypto import KeyRing
from models.customer import Customer, name_index
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.factories import audit_events, make_customer
from tests.test_customers_admin import search_customers, search_results
from tests.test_search_privacy import addresses, notice, rows

NAME_REFUSED = (
    "Searching by name needs the right to see personal data, so nothing was looked up. "
    "Search by member number, city or tag instead."
)
NAME_NOT_FOUND = (
    "No customer has this name. Names are matched exactly (whole name as recorded; case and "
    "spacing do not matter), because names are stored encrypted: a part of a name, a nickname "
    "or another spelling finds nothing. Try the customer's phone number, email address or "
    "member number."
)
MIGRATION = Path(__file__).parent.parent / "migrations" / "versions" / "e1b0a0000001_customer_name_index.py"


def people() -> tuple[Customer, Customer, Customer]:
    return (
        make_customer(name="John Smith", city="Leeds"),
        make_customer(name="王芳", city="杭州"),
        make_customer(name="Johnny Smithers", city="York"),
    )


@pytest.mark.parametrize(
    ("typed", "who"),
    [
        ("John Smith", 0),
        ("john smith", 0),
        ("  JOHN   SMITH ", 0),
        ("ＪＯＨＮ　ＳＭＩＴＨ", 0),  # full-width letters and an ideographic space
        ("王芳", 1),
        ("王 芳", 1),
        ("王　芳", 1),
    ],
)
def test_a_full_name_finds_its_customer_whatever_the_case_width_or_spacing(client, auth, typed, who):
    customers = people()
    auth.login(Role.AGENT)
    page = search_results(client, typed)
    assert (rows(page), notice(page)) == ([customers[who].member_no], None)


@pytest.mark.parametrize("typed", ["John", "Smith", "王", "Smith John", "John Smit"])
def test_a_part_of_a_name_finds_no_one_and_says_why(client, auth, typed):
    people()
    auth.login(Role.MANAGER)
    page = search_results(client, typed)
    assert (rows(page), notice(page)) == ([], NAME_NOT_FOUND)


def test_an_analyst_cannot_search_by_name_and_the_refusal_is_audited(client, auth):
    people()
    auth.login(Role.ANALYST)
    page = search_results(client, "王芳")
    assert (rows(page), notice(page)) == ([], NAME_REFUSED)
    refused = audit_events("customer.search_refused")
    assert [(e.actor, e.fields, e.detail) for e in refused] == [
        ("analyst@test.example", "name", "key=name reason=no right")
    ]
    assert audit_events("customer.search") == []


def test_an_analyst_still_finds_customers_by_city(client, auth):
    customers = people()
    auth.login(Role.ANALYST)
    page = search_results(client, "杭州")
    assert (rows(page), notice(page)) == ([customers[1].member_no], None)
    assert audit_events("customer.search_refused") == audit_events("customer.search") == []


def test_each_name_search_is_audited_with_its_count_and_never_the_name(client, auth):
    customers = people()
    auth.login(Role.AGENT)
    found = search_results(client, "John Smith")
    search_results(client, "Jane Doe")
    events = audit_events("customer.search")
    assert [(e.actor, e.fields, e.detail) for e in events] == [
        ("agent@test.example", "name", "key=name results=1"),
        ("agent@test.example", "name", "key=name results=0"),
    ]
    written = db.session.execute(sa.text("SELECT * FROM audit_event")).all()
    assert not [row for row in written if any("john" in str(v).lower() for v in row)]
    # Paging the result reads the name from its sealed token: no second look-up, no second audit.
    sort_link = next(a for a in addresses(found) if "sort=" in a)
    assert rows(client.get(sort_link).text) == [customers[0].member_no]
    assert len(audit_events("customer.search")) == 2


def test_words_that_find_a_city_or_tag_are_not_looked_up_as_a_name(client, auth):
    make_customer(name="Hangzhou Li", city="Hangzhou")
    auth.login(Role.AGENT)
    page = search_results(client, "Hangzhou")
    assert len(rows(page)) == 1
    assert audit_events("customer.search") == audit_events("customer.search_refused") == []


@pytest.mark.parametrize("app_config", [{"CONTACT_SEARCH_RATE_LIMIT": "2 per hour"}])
def test_name_searches_count_against_the_contact_search_limit(client, auth):
    customers = people()
    auth.login(Role.AGENT)
    assert rows(search_results(client, "13800138000")) == []
    assert rows(search_results(client, "王芳")) == [customers[1].member_no]
    refused = search_customers(client, "John Smith")
    page = client.get(refused.location).text
    assert "You have reached the limit of 2 searches by email, phone number or name." in page
    assert rows(page) == [c.member_no for c in reversed(customers)]  # the whole list, unsearched
    assert [e.detail for e in audit_events("customer.search_refused")] == ["key=name reason=rate limit"]


def test_the_name_index_follows_every_change_of_the_name(app):
    customer = make_customer(name="李娜")
    assert customer.name_bidx == name_index("李娜")
    with unit_of_work(SYSTEM) as uow:
        uow.add(customer)
        customer.name = "李 娜娜"
    stored = db.session.scalar(sa.select(Customer.name_bidx).where(Customer.id == customer.id))
    assert stored == name_index("李娜娜")
    with unit_of_work(SYSTEM) as uow:
        uow.add(customer)
        customer.name = "  "
    assert db.session.scalar(sa.select(Customer.name_bidx).where(Customer.id == customer.id)) is None


def test_normalised_names(app):
    assert [normalise_name(n) for n in ["  Anne-Marie  O'Neil ", "ＳＴＲＡＳＳＥ", "Straße", "张 三 丰"]] == [
        "anne-marie o'neil",
        "strasse",
        "strasse",
        "张三丰",
    ]


def test_names_are_still_found_after_the_keys_are_rotated(app, client, auth, runner, key_material):
    os.makedirs(app.instance_path, exist_ok=True)
    config.save_key_material(app.instance_path, key_material)
    app.config["PATRON_KEY_MATERIAL"] = None
    customers = people()
    result = runner.invoke(args=["rotate-keys", "--new-key"])
    assert result.exit_code == 0, result.output
    raw = db.session.execute(sa.text("SELECT name FROM customer WHERE id = :id"), {"id": customers[1].id})
    assert raw.scalar_one().startswith("v2:")
    app.extensions["patron.keyring"] = KeyRing.from_material(config.load_key_material(app.instance_path))
    auth.login(Role.AGENT)
    assert rows(search_results(client, "王芳")) == [customers[1].member_no]


def run_name_migration(step: str) -> None:
    """Run this one migration's upgrade() or downgrade() on the test's database, as Alembic does."""
    spec = importlib.util.spec_from_file_location("name_index_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with db.engine.begin() as connection:
        context = MigrationContext.configure(connection, opts={"render_as_batch": True})
        with Operations.context(context):
            getattr(migration, step)()


def test_the_migration_indexes_the_names_already_stored(app, client, auth):
    john, fang, johnny = (c.id for c in people())
    nameless = make_customer(name=None).id
    member_no = db.session.get(Customer, john).member_no
    db.session.close()
    run_name_migration("downgrade")
    assert "name_bidx" not in {c["name"] for c in sa.inspect(db.engine).get_columns("customer")}
    run_name_migration("upgrade")
    stored = dict(db.session.execute(sa.select(Customer.id, Customer.name_bidx)).all())
    assert stored == {
        john: name_index("John Smith"),
        fang: name_index("王芳"),
        johnny: name_index("Johnny Smithers"),
        nameless: None,
    }
    auth.login(Role.AGENT)
    assert rows(search_results(client, "john smith")) == [member_no]


@pytest.mark.parametrize(
    ("role", "help_text"),
    [
        (
            Role.AGENT,
            "Finds a member number, an exact email address, a phone number in any format, an exact "
            "full name, a city or a tag.",
        ),
        (
            Role.ANALYST,
            "Finds a member number, a city or a tag. Searching by email, phone or name needs the "
            "right to see personal data.",
        ),
    ],
)
def test_the_customer_search_box_says_what_it_finds_for_each_role(client, auth, role, help_text):
    auth.login(role)
    page = client.get("/admin/customers/").text
    assert f'<p class="small text-muted mt-2 mb-2" id="search-help">{help_text}</p>' in page
