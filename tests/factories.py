"""Valid objects in one call."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from models import db
from models.customer import Customer
from models.uow import SYSTEM, unit_of_work

_serial = itertools.count(1)


def make_customer(**fields) -> Customer:
    """A committed customer; any field can be overridden."""
    n = next(_serial)
    values = {
        "name": f"Test Customer {n}",
        "email": f"customer{n}@example.com",
        "phone": f"+86 138 0013 {n % 10000:04d}",
        "city": "上海",
        "language": "zh_Hans_CN",
        "source_channel": "store",
    }
    values.update(fields)
    with unit_of_work(SYSTEM) as uow:
        customer = uow.add(Customer(**values))
    return customer


def make_ticket(now=None, **fields):
    """A committed ticket (and its tracking code); any NewTicket field can be overridden."""
    from models.tickets.ticket import NewTicket, category_by_code, open_ticket

    values = {
        "subject": "Parcel late",
        "channel": "phone",
        "priority": "normal",
        "category": category_by_code("complaint"),
        "first_message": "Where is my parcel?",
    }
    values.update(fields)
    with unit_of_work(SYSTEM):
        ticket, code = open_ticket(NewTicket(**values), now=now)
    return ticket, code


def make_reward(**fields):
    """A committed reward (a tote bag for 100 points, 5 in stock); any field can be overridden."""
    from models.loyalty.rewards import Reward

    values = {"name_en": "Tote bag", "name_zh": "帆布袋", "points_cost": 100, "stock": 5}
    with unit_of_work(SYSTEM) as uow:
        reward = uow.add(Reward(**(values | fields)))
    return reward


def audit_events(action: str) -> list:
    """The audit events of one action, oldest first."""
    import sqlalchemy as sa

    from models.audit import AuditEvent

    return list(
        db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


@contextmanager
def failing_after_insert(table: str, when: str) -> Iterator[None]:
    """A database trigger that fails a transaction just after a row goes into `table` while `when`
    (SQL on the NEW row) holds, e.g. once a change and its audit event are written. It makes a
    change fail after it was written, inside its transaction; it is dropped on the way out.
    """
    if db.engine.dialect.name == "sqlite":
        create = [
            f"CREATE TRIGGER failing_after_insert AFTER INSERT ON {table} WHEN {when} "
            "BEGIN SELECT RAISE(ABORT, 'failed by the test'); END"
        ]
        drop = ["DROP TRIGGER failing_after_insert"]
    else:  # PostgreSQL: a trigger's WHEN cannot hold a subquery, so the function checks
        create = [
            "CREATE FUNCTION failing_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {when} THEN RAISE EXCEPTION 'failed by the test'; END IF; RETURN NULL; END $$",
            f"CREATE TRIGGER failing_after_insert AFTER INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION failing_after_insert()",
        ]
        drop = [f"DROP TRIGGER failing_after_insert ON {table}", "DROP FUNCTION failing_after_insert()"]
    with db.engine.begin() as conn:
        for statement in create:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement)


@contextmanager
def write_lock_held_elsewhere() -> Iterator[None]:
    """Another connection holds the SQLite database's write lock (BEGIN IMMEDIATE) in the block."""
    import sqlite3

    other = sqlite3.connect(db.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.rollback()
        other.close()
