"""Personal data never sits in the database in plaintext; the audit log cannot be rewritten."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError

from models import db
from models.audit import AuditEvent
from models.uow import SYSTEM, unit_of_work
from tests.factories import make_customer

KNOWN = [
    {
        "name": "欧阳娜娜",
        "email": "ouyang.nana@example.com",
        "phone": "13912345678",
        "address": "上海市徐汇区漕溪北路 88 号",
        "notes": "喜欢乌龙茶",
    },
    {
        "name": "Eleanor Rigby",
        "email": "eleanor.rigby@example.org",
        "phone": "+44 7911 123456",
        "address": "12 Penny Lane, Liverpool",
        "notes": "Prefers calls after 6pm",
    },
]


def every_stored_value() -> list[str]:
    """Every value in every column of every table, as text."""
    values = []
    for table in sa.inspect(db.engine).get_table_names():
        rows = db.session.execute(sa.text(f'SELECT * FROM "{table}"')).all()
        values.extend(str(value) for row in rows for value in row if value is not None)
    return values


def needles(person: dict) -> list[str]:
    digits = "".join(ch for ch in person["phone"] if ch.isdigit())
    return [
        person["name"],
        person["email"],
        person["email"].split("@")[0],
        digits[-8:],
        person["address"],
        person["notes"],
    ]


def test_no_personal_value_appears_in_plaintext_anywhere(app, client, auth):
    for person in KNOWN:
        make_customer(**person)
    auth.login("agent")
    client.get("/admin/customers/")  # listing writes audit events too
    stored = "\n".join(every_stored_value())
    for person in KNOWN:
        for needle in needles(person):
            assert needle not in stored, needle
            assert needle.lower() not in stored.lower(), needle


def test_sqlite_file_holds_no_plaintext(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("checks the SQLite file itself")
    for person in KNOWN:
        make_customer(**person)
    db.session.execute(sa.text("PRAGMA wal_checkpoint(FULL)"))
    path = db.engine.url.database
    blob = b""
    for suffix in ("", "-wal"):
        try:
            with open(path + suffix, "rb") as handle:
                blob += handle.read()
        except FileNotFoundError:
            pass
    for person in KNOWN:
        for needle in needles(person):
            assert needle.encode() not in blob, needle


def test_the_database_refuses_to_change_or_delete_audit_events(app):
    with unit_of_work(SYSTEM) as uow:
        uow.audit("customer.view", "customer", 1, ["email"])
    for statement in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(DatabaseError), unit_of_work(SYSTEM):
            db.session.execute(sa.text(statement))
    assert db.session.scalar(sa.select(AuditEvent.action)) == "customer.view"


def test_the_app_refuses_to_change_or_delete_audit_events(app):
    with unit_of_work(SYSTEM) as uow:
        event = uow.audit("customer.view", "customer", 1, ["email"])
    with pytest.raises(PermissionError), unit_of_work(SYSTEM):
        event.action = "nothing happened"
    with pytest.raises(PermissionError), unit_of_work(SYSTEM):
        db.session.delete(event)
    assert db.session.scalar(sa.select(AuditEvent.action)) == "customer.view"


def test_audit_screen_offers_no_edit_or_delete(client, auth):
    with unit_of_work(SYSTEM) as uow:
        uow.audit("customer.view", "customer", 1, ["email"])
    auth.login("admin")
    page = client.get("/admin/audit/").text
    assert "Customer: viewed" in page  # the action in words, never its code
    assert "/admin/audit/edit/" not in page and "/admin/audit/delete/" not in page
    assert client.get("/admin/audit/new/").status_code == 302
