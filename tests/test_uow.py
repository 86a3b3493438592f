"""The unit of work: one transaction per change, its audit events and domain events inside it."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.customer import Customer
from models.events import DomainEvent, _handlers, handles
from models.uow import SYSTEM, Actor, WriteOutsideUnitOfWork, current_uow, unit_of_work
from tests.factories import make_customer


@dataclass(frozen=True)
class Pinged(DomainEvent):
    customer_id: int


@pytest.fixture
def ping_handlers():
    """Handlers registered by a test for the Pinged event, removed afterwards."""
    registered = _handlers.setdefault(Pinged, [])
    yield registered
    registered.clear()


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_a_row_added_outside_a_unit_of_work_is_refused(app):
    db.session.add(Customer(name="Outside", city="上海"))
    with pytest.raises(WriteOutsideUnitOfWork):
        db.session.flush()
    db.session.rollback()
    assert count(Customer) == 0


def test_a_write_statement_outside_a_unit_of_work_is_refused(app):
    customer = make_customer()
    with pytest.raises(WriteOutsideUnitOfWork):
        db.session.execute(sa.update(Customer).where(Customer.id == customer.id).values(city="北京"))
    db.session.rollback()
    assert db.session.get(Customer, customer.id).city == "上海"


def test_the_change_and_its_audit_event_commit_together(app):
    with unit_of_work(Actor.system("test")) as uow:
        customer = uow.add(Customer(name="Together", city="上海"))
        db.session.flush()
        uow.audit("customer.create", "customer", customer.id, ["name", "city"])
    events = db.session.scalars(sa.select(AuditEvent)).all()
    assert [(e.action, e.object_id, e.fields, e.actor, e.actor_id) for e in events] == [
        ("customer.create", str(customer.id), "city,name", "test", None)
    ]
    assert count(Customer) == 1


def test_a_failure_after_the_change_leaves_neither_the_change_nor_its_audit_event(app):
    with pytest.raises(RuntimeError, match="later step"):
        with unit_of_work(SYSTEM) as uow:
            customer = uow.add(Customer(name="Lost", city="上海"))
            db.session.flush()
            uow.audit("customer.create", "customer", customer.id, ["name"])
            raise RuntimeError("a later step failed")
    assert count(Customer) == 0
    assert count(AuditEvent) == 0


def test_a_staff_actor_is_named_in_the_audit_event(app):
    from tests.conftest import make_staff

    user = make_staff("agent")
    with unit_of_work(Actor.staff(user, "192.0.2.7")) as uow:
        uow.audit("customer.view", "customer", 5, ["email"])
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "customer.view"))
    assert (event.actor, event.actor_id, event.ip) == (user.email, user.id, "192.0.2.7")


def test_domain_event_handlers_run_inside_the_same_transaction(app, ping_handlers):
    customer = make_customer()

    @handles(Pinged)
    def tag(uow, event):
        db.session.get(Customer, event.customer_id).tags = "pinged"
        uow.audit("customer.tag", "customer", event.customer_id, ["tags"])

    with unit_of_work(SYSTEM) as uow:
        uow.emit(Pinged(customer.id))
        assert db.session.get(Customer, customer.id).tags in (None, "")  # not yet: handled before commit
    assert db.session.get(Customer, customer.id).tags == "pinged"
    assert [e.action for e in db.session.scalars(sa.select(AuditEvent))] == ["customer.tag"]


def test_a_failing_handler_undoes_the_change_that_raised_its_event(app, ping_handlers):
    customer = make_customer()

    @handles(Pinged)
    def refuse(uow, event):
        raise ValueError("handler refused")

    with pytest.raises(ValueError, match="handler refused"):
        with unit_of_work(SYSTEM) as uow:
            db.session.get(Customer, customer.id).city = "北京"
            uow.audit("customer.edit", "customer", customer.id, ["city"])
            uow.emit(Pinged(customer.id))
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).city == "上海"
    assert count(AuditEvent) == 0


def test_a_unit_of_work_cannot_be_opened_inside_another(app):
    with unit_of_work(SYSTEM):
        with pytest.raises(RuntimeError, match="already open"):
            with unit_of_work(SYSTEM):
                pass
        assert current_uow().actor == SYSTEM


def test_changes_made_before_the_unit_of_work_began_are_refused(app):
    customer = make_customer()
    db.session.get(Customer, customer.id).city = "北京"
    with pytest.raises(WriteOutsideUnitOfWork, match="before the unit of work"):
        with unit_of_work(SYSTEM):
            pass
    db.session.rollback()


def test_a_unit_of_work_that_reads_then_writes_queues_behind_another_writer(app):
    """The failure this replaces: on SQLite a transaction that read first cannot write after
    another connection committed ("database is locked" at once, whatever the busy timeout).
    The unit of work takes the write lock up front, so the second writer waits instead."""
    customer_id = make_customer().id
    db.session.commit()  # the test body holds no transaction while the two writers work
    first_has_read, second_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def second_writer():
        with app.app_context():
            first_has_read.wait(10)
            try:
                with unit_of_work(SYSTEM):
                    db.session.get(Customer, customer_id).city = "广州"
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                second_done.set()
                db.session.remove()

    thread = threading.Thread(target=second_writer)
    thread.start()
    with app.app_context():
        with unit_of_work(SYSTEM) as uow:
            db.session.get(Customer, customer_id)  # read first ...
            first_has_read.set()
            if db.engine.dialect.name == "sqlite":
                # ... give the second writer the chance to commit in between (it cannot: it queues).
                assert not second_done.wait(1)
            db.session.get(Customer, customer_id).tags = "vip"  # ... then write
            uow.audit("customer.edit", "customer", customer_id, ["tags"])
        db.session.remove()
    thread.join(15)
    assert errors == []
    saved = db.session.get(Customer, customer_id)
    assert (saved.city, saved.tags) == ("广州", "vip")
