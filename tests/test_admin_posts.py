"""Every bulk action and every POST endpoint of the admin, used by a role that may, with real ids.

Each case asserts the exact answer and its effect in the database, so that a 500 anywhere (or a
save that Flask-Admin turns into "Failed to create record" on a 200 page) fails a test. The cases
share the world of tests/test_access.py (one database, one signed-in client per role) and each
makes the objects it changes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import BytesIO

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from flask.testing import FlaskClient

from models import db
from models.audit import AuditEvent
from models.uow import SYSTEM, unit_of_work
from models.user import StaffUser
from tests.conftest import TEST_PASSWORD, AuthActions, make_staff
from tests.factories import make_customer, make_reward, make_ticket
from tests.test_access import (
    ROLES,
    SIGN_IN,
    World,
    admin_views,
    collection_app,
    expected_roles,
    forms_in,
    may_act,
    page_form,
    shared_world,
    staff_endpoints,
    switches,
    where,
)

LEAST_FIRST = ["analyst", "agent", "manager", "admin"]
# Flask-Admin's own POST endpoints, exercised view by view below (ajax_update answers 404 to
# everyone allowed, as the access matrix asserts: no view has editable list columns).
STOCK_POSTS = {"create_view", "edit_view", "delete_view", "action_view", "ajax_update"}
TICKET_PAGE_POSTS = ("reply", "move", "update", "bulk_assign", "bulk_priority", "take", "finish")
_serial = itertools.count(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, migrated_database, key_material) -> Iterator[World]:
    with shared_world(tmp_path_factory.mktemp("posts"), migrated_database, key_material) as world:
        yield world


@pytest.fixture
def world(shared: World) -> Iterator[World]:
    """The shared world, with an app context of its own for the test body."""
    with shared.app.app_context():
        yield shared
        db.session.remove()


# Reading answers and the database -------------------------------------------------------------
def least_role(roles: set[str]) -> str | None:
    """The role with the fewest rights among these: the strictest proof that the right suffices."""
    return next((role for role in LEAST_FIRST if role in roles), None)


def answer(response) -> tuple[int, str | None]:
    """Status, and the redirect's target as path?query."""
    return response.status_code, where(response.location) if response.status_code in (302, 303) else None


def path(endpoint: str, **values) -> str:
    return url_for(endpoint, _external=False, **values)


def model_of(world: World, endpoint: str) -> type:
    return world.views[endpoint].model


def reread(model: type, row_id: int):
    """A row as the database holds it now (None if gone)."""
    db.session.expire_all()
    return db.session.get(model, row_id)


def columns(model: type, row_id: int) -> dict | None:
    """Every column of a row, to show that a refused request changed nothing."""
    row = reread(model, row_id)
    return None if row is None else {c.key: getattr(row, c.key) for c in sa.inspect(model).column_attrs}


def newest_id(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.max(model.id))) or 0


def audit_mark() -> int:
    return newest_id(AuditEvent)


def audited(action: str, since: int) -> list[AuditEvent]:
    """Audit events of one action written after a mark."""
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.id > since)
            .order_by(AuditEvent.id)
        )
    )


def audited_ids(action: str, since: int) -> list[str | None]:
    return [event.object_id for event in audited(action, since)]


def token_on(client: FlaskClient, *pages: str, field: str = "csrf_token") -> str:
    """The CSRF token of the first form on these pages that carries one, as staff see it."""
    for page in pages:
        for form in forms_in(client.get(page).text, page):
            for name, value in form.fields:
                if name == field:
                    return value
    raise AssertionError(f"no {field} on {pages}")


# Fresh objects, made as the system ----------------------------------------------------------
def fresh_customer(**fields) -> int:
    return make_customer(**fields).id


def fresh_ticket(**fields) -> int:
    return make_ticket(**fields)[0].id


def fresh_purchase(customer_id: int, amount: str = "500.00") -> int:
    from models.loyalty.purchases import NewPurchase, record_purchase

    with unit_of_work(SYSTEM):
        spec = NewPurchase(customer_id, "admin", f"POSTS-{next(_serial)}", Decimal(amount), "CNY")
        result = record_purchase(spec)
    return result.purchase.id


def fresh_redemption() -> int:
    from models.loyalty.rewards import redeem

    customer_id = fresh_customer()
    fresh_purchase(customer_id)
    reward_id = make_reward().id
    with unit_of_work(SYSTEM):
        redemption = redeem(customer_id, reward_id).redemption
    return redemption.id


def fresh_survey() -> int:
    from models.surveys.builder import Question, Survey

    with unit_of_work(SYSTEM) as uow:
        question = Question(position=1, kind="rating", prompt="How was it?")
        survey = uow.add(Survey(title=f"Survey {next(_serial)}", language="en", questions=[question]))
    return survey.id


def fresh_invitation(world: World) -> int:
    from models.surveys.builder import Survey
    from models.surveys.invitations import invite_customers

    customer_id = fresh_customer()
    with unit_of_work(SYSTEM):
        ((invitation, _token),) = invite_customers(db.session.get(Survey, world.ids["survey"]), [customer_id])
    return invitation.id


def fresh_promotion() -> int:
    from models.loyalty.programme import Promotion

    start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=next(_serial))
    with unit_of_work(SYSTEM) as uow:
        promotion = uow.add(
            Promotion(
                name="Weekend", multiplier=Decimal("1.50"), starts_at=start, ends_at=start + timedelta(2)
            )
        )
    return promotion.id


def fresh_holiday() -> int:
    from models.tickets.policy import Holiday

    with unit_of_work(SYSTEM) as uow:
        holiday = uow.add(Holiday(day=date(2032, 1, 1) + timedelta(days=next(_serial)), name="Closed"))
    return holiday.id


def fresh_canned_reply() -> int:
    from models.tickets.canned import CannedReply

    with unit_of_work(SYSTEM) as uow:
        reply = uow.add(CannedReply(title=f"Thanks {next(_serial)}", language="en", body="Thank you!"))
    return reply.id


def fresh_api_key() -> int:
    from models.api_key import create_api_key

    with unit_of_work(SYSTEM):
        key, _text = create_api_key("Kiosk", f"kiosk{next(_serial)}", ["points:read"])
    return key.id


def fresh_staff(role: str = "agent") -> int:
    return make_staff(role, f"staff{next(_serial)}@test.example").id


def member_no(world: World, customer_id: int | None = None) -> str:
    model = model_of(world, "customers")
    return db.session.get(model, customer_id or world.ids["customer"]).member_no


def points_of(world: World, customer_id: int) -> int:
    """The customer's balance as the ledger sums it."""
    entry = model_of(world, "ledger")
    return db.session.scalar(sa.select(sa.func.sum(entry.points)).where(entry.customer_id == customer_id))


# Rows a case may delete, by model.
FRESH: dict[str, Callable[[World], int]] = {
    "Customer": lambda world: fresh_customer(),
    "Promotion": lambda world: fresh_promotion(),
    "Survey": lambda world: fresh_survey(),
    "Holiday": lambda world: fresh_holiday(),
    "CannedReply": lambda world: fresh_canned_reply(),
}


# Parametrisation from the app's own views -------------------------------------------------
def model_views(app: Flask) -> list:
    return [view for view in admin_views(app).values() if hasattr(view, "model")]


def roles_switched_on(app: Flask, endpoint: str, switch: str) -> set[str]:
    """Roles that may use a page of a model view and for whom the view has it switched on."""
    view = admin_views(app)[endpoint]
    page = {"can_create": "create_view", "can_edit": "edit_view", "can_delete": "delete_view"}[switch]
    allowed = expected_roles(f"{endpoint}.{page}", view)
    return {role for role in allowed if switches(app, endpoint, role)[switch]}


def switched(switch: str, on: bool) -> list[str]:
    """Model views whose page behind `switch` some role may use (on) or no role may (off)."""
    app = collection_app()
    return [v.endpoint for v in model_views(app) if bool(roles_switched_on(app, v.endpoint, switch)) == on]


def action_cases(allowed: bool) -> list:
    """(view, action) for every list action of every view that some role may (or no role may) run."""
    app = collection_app()
    cases = []
    for view in model_views(app):
        for action, _label in view._actions:
            if any(may_act(app, view.endpoint, action, role) for role in ROLES) == allowed:
                cases.append(pytest.param(view.endpoint, action, id=f"{view.endpoint}.{action}"))
    return cases


def ticket_page_posts(name: str) -> list[str]:
    """Endpoints of one ticket-page POST, on every ticket queue view."""
    return [e for e in staff_endpoints(collection_app()) if e.partition(".")[2] == name]


# Bulk actions -------------------------------------------------------------------------------
def run_action(world: World, role: str, endpoint: str, action: str, ids: list[int], token: bool = True):
    """Run a list action as the list page's action form does."""
    client = world.clients[role]
    listing = path(f"{endpoint}.index_view")
    data = {"action": action, "rowid": [str(i) for i in ids], "url": listing}
    if token:
        data["csrf_token"] = token_on(client, listing, path("customers.create_view"))
    return client.post(path(f"{endpoint}.action_view"), data=data)


ACTIONS: dict[tuple[str, str], Callable[[World, str, str], None]] = {}


def checks(model: str, action: str):
    """Register the check of one list action of a model's views."""

    def register(check: Callable[[World, str, str], None]) -> Callable[[World, str, str], None]:
        ACTIONS[(model, action)] = check
        return check

    return register


def action_changes(world, endpoint, role, action, row_id, audit, attribute, value) -> None:
    """Run an action on one row: back to the list, the attribute changed, one audit event."""
    mark = audit_mark()
    response = run_action(world, role, endpoint, action, [row_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert getattr(reread(model_of(world, endpoint), row_id), attribute) == value
    assert audited_ids(audit, mark) == [str(row_id)]


@checks("Ticket", "close")
def closing_closes_the_ticket(world, endpoint, role):
    action_changes(world, endpoint, role, "close", fresh_ticket(), "ticket.status", "status", "closed")


@checks("Ticket", "assign")
def assigning_opens_the_assign_page(world, endpoint, role):
    response = run_action(world, role, endpoint, "assign", [world.ids["ticket"]])
    assert answer(response) == (302, path(f"{endpoint}.bulk_assign", ids=world.ids["ticket"]))


@checks("Ticket", "take")
def taking_assigns_the_ticket_to_oneself(world, endpoint, role):
    ticket_id = fresh_ticket()
    action_changes(world, endpoint, role, "take", ticket_id, "ticket.edit", "owner_id", world.staff_ids[role])
    assert reread(model_of(world, endpoint), ticket_id).status == "acknowledged"


@checks("Ticket", "priority")
def changing_priority_opens_the_priority_page(world, endpoint, role):
    response = run_action(world, role, endpoint, "priority", [world.ids["ticket"]])
    assert answer(response) == (302, path(f"{endpoint}.bulk_priority", ids=world.ids["ticket"]))


@checks("Customer", "invite")
def inviting_opens_the_invitation_page(world, endpoint, role):
    response = run_action(world, role, endpoint, "invite", [world.ids["customer"]])
    assert answer(response) == (302, path("survey_invite.index", ids=world.ids["customer"]))


@checks("StaffUser", "reset_two_factor")
def resetting_two_factor_removes_it_audited(world, endpoint, role):
    from models.two_factor import has_two_factor
    from tests.conftest import enrol_two_factor

    staff_id = fresh_staff()
    enrol_two_factor(db.session.get(StaffUser, staff_id))
    mark = audit_mark()
    response = run_action(world, role, endpoint, "reset_two_factor", [staff_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert not has_two_factor(reread(StaffUser, staff_id))
    assert audited_ids("two_factor.reset", mark) == [str(staff_id)]


@checks("StaffUser", "reset_link")
def making_a_reset_link_shows_it_once_audited(world, endpoint, role):
    staff_id = fresh_staff()
    mark = audit_mark()
    response = run_action(world, role, endpoint, "reset_link", [staff_id])
    assert response.status_code == 200 and "/login/reset/" in response.text
    assert audited_ids("password_reset.create", mark) == [str(staff_id)]


@checks("Purchase", "refund")
def refunding_refunds_the_purchase(world, endpoint, role):
    purchase_id = fresh_purchase(fresh_customer())
    action_changes(world, endpoint, role, "refund", purchase_id, "purchase.refund", "status", "refunded")


@checks("Redemption", "use")
def marking_used_uses_the_coupon(world, endpoint, role):
    action_changes(world, endpoint, role, "use", fresh_redemption(), "redemption.use", "status", "used")


@checks("Redemption", "cancel")
def cancelling_cancels_the_coupon_and_gives_the_points_back(world, endpoint, role):
    redemption_id = fresh_redemption()
    redemption = reread(model_of(world, endpoint), redemption_id)
    customer_id, before = redemption.customer_id, points_of(world, redemption.customer_id)
    action_changes(world, endpoint, role, "cancel", redemption_id, "redemption.cancel", "status", "cancelled")
    assert points_of(world, customer_id) == before + redemption.points


@checks("Invitation", "mark_sent")
def marking_sent_marks_the_invitation(world, endpoint, role):
    invitation_id = fresh_invitation(world)
    mark = audit_mark()
    response = run_action(world, role, endpoint, "mark_sent", [invitation_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert reread(model_of(world, endpoint), invitation_id).status == "sent"
    assert [e.detail for e in audited("survey_invitation.sent", mark)] == ["n=1"]


@checks("ApiKey", "revoke")
def revoking_revokes_the_key(world, endpoint, role):
    key_id = fresh_api_key()
    mark = audit_mark()
    response = run_action(world, role, endpoint, "revoke", [key_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert reread(model_of(world, endpoint), key_id).revoked_at is not None
    assert audited_ids("api_key.revoke", mark) == [str(key_id)]


def deleting_deletes_the_row(world, endpoint, role):
    """The list's "delete" action: the row is gone, with its audit event."""
    view = world.views[endpoint]
    make = FRESH.get(view.model.__name__)
    assert make is not None, f"{endpoint}: give FRESH a maker of {view.model.__name__} rows"
    row_id = make(world)
    mark = audit_mark()
    response = run_action(world, role, endpoint, "delete", [row_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert reread(view.model, row_id) is None
    assert audited_ids(f"{view.audit_name()}.delete", mark) == [str(row_id)]


@pytest.mark.parametrize(("endpoint", "action"), action_cases(allowed=True))
def test_each_bulk_action_does_its_work_for_the_least_role_that_may_run_it(world, endpoint, action):
    role = least_role({r for r in ROLES if may_act(world.app, endpoint, action, r)})
    check = (
        deleting_deletes_the_row
        if action == "delete"
        else ACTIONS.get((model_of(world, endpoint).__name__, action))
    )
    assert check is not None, f"no expectation for the action {action!r} of {endpoint}: add one to ACTIONS"
    check(world, endpoint, role)


@pytest.mark.parametrize(("endpoint", "action"), action_cases(allowed=False))
def test_a_bulk_action_no_role_may_run_changes_nothing(world, endpoint, action):
    model = model_of(world, endpoint)
    row_id = world.first_id(model)
    before = columns(model, row_id)
    response = run_action(world, "admin", endpoint, action, [row_id])
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert columns(model, row_id) == before


# Flask-Admin's create, edit and delete forms ----------------------------------------------------
def create_values(world: World, model: str) -> dict:
    """What a member of staff types into a model's create form."""
    n = next(_serial)
    return {
        "Customer": {
            "name": f"Created {n}",
            "email": f"created{n}@example.com",
            "phone": f"+86 139 1000 {n:04d}",
        },
        "Ticket": {
            "subject": f"Zip broke {n}",
            "customer_lookup": member_no(world),
            "first_message": "It broke.",
        },
        "Purchase": {"customer_lookup": member_no(world), "order_ref": f"ADMIN-{n}", "amount": "120.00"},
        "Reward": {"name_en": f"Mug {n}", "name_zh": "杯子", "points_cost": "200", "stock": "3"},
        "Promotion": {
            "name": f"Spring {n}",
            "multiplier": "2",
            "starts_at": "2031-03-01 00:00:00",
            "ends_at": "2031-03-08 00:00:00",
        },
        "Survey": {
            "title": f"Store visit {n}",
            "language": "en",
            "questions-0-kind": "nps",
            "questions-0-prompt": "Would you recommend us?",
            "questions-0-required": "y",
        },
        "TicketCategory": {"code": f"cat{n}", "name_en": f"Category {n}", "name_zh": "类别", "position": "9"},
        "Holiday": {"day": (date(2033, 1, 1) + timedelta(days=n)).isoformat(), "name": "Closed"},
        "CannedReply": {"title": f"Refund approved {n}", "language": "en", "body": "Refund sent."},
        "Tier": {
            "code": f"tier{n}",
            "name_en": f"Tier {n}",
            "name_zh": "等级",
            "threshold": "90000",
            "multiplier": "3",
        },
        "StaffUser": {
            "email": f"created{n}@test.example",
            "role": "agent",
            "new_password": "Marble-otter-51-canal",
        },
    }[model]


def lands_after_create(world: World, endpoint: str, row_id: int) -> str:
    """Where a saved create form leads: the ticket page for tickets, else the list."""
    if model_of(world, endpoint).__name__ == "Ticket":
        return path("tickets.ticket_page", ticket_id=row_id)
    return path(f"{endpoint}.index_view")


@pytest.mark.parametrize("endpoint", switched("can_create", on=True))
def test_each_create_form_stores_one_row_and_its_audit_event(world, endpoint):
    view = world.views[endpoint]
    client = world.clients[least_role(roles_switched_on(world.app, endpoint, "can_create"))]
    page = path(f"{endpoint}.create_view")
    form = page_form(client, page)
    before, mark = newest_id(view.model), audit_mark()
    response = client.post(page, data=form.values(**create_values(world, view.model.__name__)))
    created = db.session.scalars(sa.select(view.model.id).where(view.model.id > before)).all()
    assert len(created) == 1, response.text
    assert answer(response) == (302, lands_after_create(world, endpoint, created[0]))
    assert audited_ids(f"{view.audit_name()}.create", mark) == [str(created[0])]


@pytest.mark.parametrize("endpoint", switched("can_create", on=False))
def test_a_create_form_switched_off_stores_nothing(world, endpoint):
    model = model_of(world, endpoint)
    before = newest_id(model)
    token = token_on(world.clients["admin"], path("customers.create_view"))
    response = world.clients["admin"].post(path(f"{endpoint}.create_view"), data={"csrf_token": token})
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert newest_id(model) == before


# model -> (the row to edit, the field typed, the attribute stored, the value stored)
EDITS: dict[str, tuple[Callable[[World], int], str, str, str, object]] = {
    "Customer": (lambda w: fresh_customer(), "city", "杭州", "city", "杭州"),
    "Reward": (lambda w: make_reward().id, "stock", "9", "stock", 9),
    "Promotion": (lambda w: fresh_promotion(), "name", "Triple points", "name", "Triple points"),
    "Survey": (lambda w: fresh_survey(), "title", "After the call", "title", "After the call"),
    "TicketCategory": (None, "name_en", "Complaint (renamed)", "name_en", "Complaint (renamed)"),
    "SlaPolicy": (None, "first_response_minutes", "45", "first_response_minutes", 45),
    "BusinessCalendar": (None, "timezone", "Asia/Hong_Kong", "timezone", "Asia/Hong_Kong"),
    "Holiday": (lambda w: fresh_holiday(), "name", "Bridge day", "name", "Bridge day"),
    "CannedReply": (lambda w: fresh_canned_reply(), "title", "Thanks (new)", "title", "Thanks (new)"),
    "Tier": (None, "name_en", "Member (renamed)", "name_en", "Member (renamed)"),
    "EarningRule": (None, "minimum_amount", "1.00", "minimum_amount", Decimal("1.00")),
    "StaffUser": (lambda w: fresh_staff(), "display_name", "Renamed", "display_name", "Renamed"),
}


@pytest.mark.parametrize("endpoint", switched("can_edit", on=True))
def test_each_edit_form_saves_the_change_and_its_audit_event(world, endpoint):
    """Sent back as shown with one field changed, the form stores that change and names it."""
    view = world.views[endpoint]
    assert view.model.__name__ in EDITS, f"{endpoint}: give EDITS a change for {view.model.__name__}"
    make, field, typed, attribute, stored = EDITS[view.model.__name__]
    row_id = make(world) if make else world.first_id(view.model)
    client = world.clients[least_role(roles_switched_on(world.app, endpoint, "can_edit"))]
    page = path(f"{endpoint}.edit_view", id=row_id)
    form = page_form(client, page)
    mark = audit_mark()
    response = client.post(page, data=form.values(**{field: typed}))
    assert answer(response) == (302, path(f"{endpoint}.index_view")), response.text
    assert getattr(reread(view.model, row_id), attribute) == stored
    (event,) = audited(f"{view.audit_name()}.edit", mark)
    assert (event.object_id, event.fields) == (str(row_id), attribute)


@pytest.mark.parametrize("endpoint", switched("can_edit", on=False))
def test_an_edit_form_switched_off_changes_nothing(world, endpoint):
    model = model_of(world, endpoint)
    row_id = world.first_id(model)
    before = columns(model, row_id)
    token = token_on(world.clients["admin"], path("customers.create_view"))
    response = world.clients["admin"].post(
        path(f"{endpoint}.edit_view", id=row_id), data={"csrf_token": token}
    )
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert columns(model, row_id) == before


@pytest.mark.parametrize("endpoint", switched("can_delete", on=True))
def test_each_delete_button_deletes_the_row_and_audits_it(world, endpoint):
    view = world.views[endpoint]
    assert view.model.__name__ in FRESH, f"{endpoint}: give FRESH a maker of {view.model.__name__} rows"
    row_id = FRESH[view.model.__name__](world)
    client = world.clients[least_role(roles_switched_on(world.app, endpoint, "can_delete"))]
    listing = path(f"{endpoint}.index_view")
    form = page_form(client, listing, path(f"{endpoint}.delete_view"))
    mark = audit_mark()
    response = client.post(form.action, data=form.values(id=str(row_id), url=listing))
    assert answer(response) == (302, listing)
    assert reread(view.model, row_id) is None
    assert audited_ids(f"{view.audit_name()}.delete", mark) == [str(row_id)]


@pytest.mark.parametrize("endpoint", switched("can_delete", on=False))
def test_a_delete_switched_off_deletes_nothing(world, endpoint):
    model = model_of(world, endpoint)
    row_id = world.first_id(model)
    token = token_on(world.clients["admin"], path("customers.create_view"))
    data = {"id": str(row_id), "csrf_token": token}
    response = world.clients["admin"].post(path(f"{endpoint}.delete_view"), data=data)
    assert answer(response) == (302, path(f"{endpoint}.index_view"))
    assert reread(model, row_id) is not None


# The ticket page and the bulk pages ---------------------------------------------------------
def ticket_case(world: World, endpoint: str) -> tuple[FlaskClient, str, int]:
    """(client of the least role that may, the view, a fresh ticket) for a ticket-page POST."""
    view_endpoint = endpoint.partition(".")[0]
    role = least_role(expected_roles(endpoint, world.views[view_endpoint]))
    return world.clients[role], view_endpoint, fresh_ticket()


def ticket(world: World, ticket_id: int):
    return reread(model_of(world, "tickets"), ticket_id)


@pytest.mark.parametrize("endpoint", ticket_page_posts("reply"))
def test_a_reply_joins_the_thread(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(f"{view}.ticket_page", ticket_id=ticket_id)
    form = page_form(client, page, path(endpoint, ticket_id=ticket_id))
    mark = audit_mark()
    response = client.post(form.action, data=form.values(kind="note", body="Called the courier."))
    assert answer(response) == (302, page)
    assert [(m.kind, m.body) for m in ticket(world, ticket_id).messages][-1] == (
        "note",
        "Called the courier.",
    )
    assert audited_ids("ticket.message", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("move"))
def test_a_move_changes_the_status(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(f"{view}.ticket_page", ticket_id=ticket_id)
    form = page_form(client, page, path(endpoint, ticket_id=ticket_id), to_status="acknowledged")
    mark = audit_mark()
    response = client.post(form.action, data=form.values())
    assert answer(response) == (302, page)
    assert ticket(world, ticket_id).status == "acknowledged"
    assert audited_ids("ticket.status", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("take"))
def test_assign_to_me_takes_and_acknowledges_the_ticket(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(f"{view}.ticket_page", ticket_id=ticket_id)
    form = page_form(client, page, path(endpoint, ticket_id=ticket_id))
    mark = audit_mark()
    response = client.post(form.action, data=form.values())
    assert answer(response) == (302, page)
    taken = ticket(world, ticket_id)
    assert (taken.owner_id, taken.status) == (world.staff_ids["agent"], "acknowledged")
    assert audited_ids("ticket.edit", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("finish"))
def test_resolve_with_a_reply_does_both(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(f"{view}.ticket_page", ticket_id=ticket_id)
    form = page_form(client, page, path(endpoint, ticket_id=ticket_id), to_status="resolved")
    mark = audit_mark()
    response = client.post(form.action, data=form.values(reply="Sorted, thank you."))
    assert answer(response) == (302, page)
    done = ticket(world, ticket_id)
    assert (done.status, done.messages[-1].kind, done.messages[-1].body) == (
        "resolved",
        "outbound",
        "Sorted, thank you.",
    )
    assert audited_ids("ticket.status", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("update"))
def test_an_update_sets_owner_and_priority(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(f"{view}.ticket_page", ticket_id=ticket_id)
    form = page_form(client, page, path(endpoint, ticket_id=ticket_id))
    owner = world.staff_ids["agent"]
    mark = audit_mark()
    response = client.post(form.action, data=form.values(owner=str(owner), priority="high"))
    assert answer(response) == (302, page)
    changed = ticket(world, ticket_id)
    assert (changed.owner_id, changed.priority) == (owner, "high")
    assert audited_ids("ticket.edit", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("bulk_assign"))
def test_the_assign_page_assigns_the_tickets(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(endpoint, ids=ticket_id)
    form = page_form(client, page, path(endpoint))
    owner = world.staff_ids["manager"]
    mark = audit_mark()
    response = client.post(form.action, data=form.values(owner=str(owner)))
    assert answer(response) == (302, path(f"{view}.index_view"))
    assert ticket(world, ticket_id).owner_id == owner
    assert audited_ids("ticket.edit", mark) == [str(ticket_id)]


@pytest.mark.parametrize("endpoint", ticket_page_posts("bulk_priority"))
def test_the_priority_page_changes_the_priority(world, endpoint):
    client, view, ticket_id = ticket_case(world, endpoint)
    page = path(endpoint, ids=ticket_id)
    form = page_form(client, page, path(endpoint))
    mark = audit_mark()
    response = client.post(form.action, data=form.values(priority="urgent"))
    assert answer(response) == (302, path(f"{view}.index_view"))
    assert ticket(world, ticket_id).priority == "urgent"
    assert audited_ids("ticket.edit", mark) == [str(ticket_id)]


# The other forms of the admin ---------------------------------------------------------------
def test_a_manager_adjusts_points_on_the_customer_page(world):
    customer_id = fresh_customer()
    fresh_purchase(customer_id)
    client = world.clients["manager"]
    page = path("customers.details_view", id=customer_id)
    form = page_form(client, page, path("customers.adjust_points", customer_id=customer_id))
    before, mark = points_of(world, customer_id), audit_mark()
    response = client.post(form.action, data=form.values(points="50", reason="Parcel was late"))
    assert answer(response) == (302, page)
    assert points_of(world, customer_id) == before + 50
    assert audited_ids("points.adjust", mark) == [str(customer_id)]


def test_a_manager_searches_customers_by_email_through_the_search_form(world):
    email = f"searched{next(_serial)}@example.com"
    customer_id = fresh_customer(email=email)
    client = world.clients["manager"]
    form = page_form(client, path("customers.index_view"), path("customers.search"))
    mark = audit_mark()
    response = client.post(form.action, data=form.values(search=email))
    status, target = answer(response)
    assert status == 302 and target is not None and target.startswith(path("customers.index_view") + "?q=")
    assert email not in target
    assert [(e.object_id, e.detail) for e in audited("customer.search", mark)] == [
        (None, "key=email results=1")
    ]
    assert f'href="{path("customers.details_view", id=customer_id)}' in client.get(target).text


def test_an_admin_issues_an_api_key_and_sees_it_once(world):
    client = world.clients["admin"]
    page = path("api_keys.issue")
    form = page_form(client, page)
    source, mark = f"webshop{next(_serial)}", audit_mark()
    response = client.post(page, data=form.values(name="Webshop", source=source, scopes=["points:read"]))
    assert response.status_code == 200 and "ptr_" in response.text
    key = db.session.scalar(
        sa.select(model_of(world, "api_keys")).where(model_of(world, "api_keys").source == source)
    )
    assert key is not None and key.scopes == "points:read"
    assert audited_ids("api_key.create", mark) == [str(key.id)]


def test_a_manager_imports_purchases_from_a_csv_file(world):
    client = world.clients["manager"]
    page = path("purchase_import.index")
    form = page_form(client, page)
    source, mark = f"csv{next(_serial)}", audit_mark()
    data = form.values(source=source)
    del data["dry_run"]  # the box unticked: store the purchases
    data["file"] = (BytesIO(f"order_ref,customer,amount\nIMP-1,{member_no(world)},88.00\n".encode()), "p.csv")
    response = client.post(page, data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    purchase = model_of(world, "purchases")
    stored = db.session.scalars(sa.select(purchase.order_ref).where(purchase.source == source)).all()
    assert stored == ["IMP-1"]
    assert [e.detail for e in audited("purchase.import", mark)] == ["rows=1"]


def invite(world: World, **fields: str):
    """Send the invitation form as an agent, for the world's survey."""
    client = world.clients["agent"]
    page = path("survey_invite.index")
    data = page_form(client, page).values(survey=str(world.ids["survey"]), **fields)
    response = client.post(page, data=data)
    # A segment is shown with its size first; invitations are made once that is confirmed.
    shown = re.search(r'name="confirm_token" value="([^"]+)"', response.text)
    return client.post(page, data=data | {"confirm_token": shown.group(1)}) if shown else response


def invited_customers(world: World, since: int) -> set[int]:
    invitation = model_of(world, "survey_invitations")
    return set(db.session.scalars(sa.select(invitation.customer_id).where(invitation.id > since)))


def test_an_agent_invites_one_customer_and_gets_the_link(world):
    customer_id = fresh_customer()
    before, mark = newest_id(model_of(world, "survey_invitations")), audit_mark()
    response = invite(world, customer=member_no(world, customer_id))
    assert response.status_code == 200 and "/s/" in response.text
    assert invited_customers(world, before) == {customer_id}
    assert audited_ids("survey.invite", mark) == [str(world.ids["survey"])]


def test_inviting_a_segment_by_each_tier_invites_exactly_its_members(world):
    """Each tier, the base tier included (customers without an account are in it too)."""
    from models.loyalty.ledger import LoyaltyAccount
    from models.loyalty.programme import BASE_TIER, Tier

    city = f"Tiertown {next(_serial)}"
    codes = list(db.session.scalars(sa.select(Tier.code).order_by(Tier.threshold)))
    without_account = fresh_customer(city=city)
    members = {code: {fresh_customer(city=city)} for code in codes}
    for code, (customer_id,) in members.items():
        fresh_purchase(customer_id, "1.00")
        with unit_of_work(SYSTEM):
            db.session.get(LoyaltyAccount, customer_id).tier_code = code
    members[BASE_TIER].add(without_account)
    answers, expected = {}, {}
    for code in codes:
        before = newest_id(model_of(world, "survey_invitations"))
        answers[code] = (invite(world, city=city, tier=code).status_code, invited_customers(world, before))
        expected[code] = (200, members[code])
    assert answers == expected


def test_the_links_page_marks_the_invitations_sent(world):
    customer_id = fresh_customer()
    client = world.clients["agent"]
    links = invite(world, customer=member_no(world, customer_id))
    (form,) = [f for f in forms_in(links.text) if f.action == path("survey_invite.sent")]
    mark = audit_mark()
    response = client.post(form.action, data=form.values())
    assert answer(response) == (302, path("survey_invitations.index_view"))
    invitation = model_of(world, "survey_invitations")
    sent = db.session.scalars(sa.select(invitation.status).where(invitation.customer_id == customer_id)).all()
    assert sent == ["sent"]
    assert [e.detail for e in audited("survey_invitation.sent", mark)] == ["n=1"]


def signed_in_client(world: World, role: str = "analyst") -> tuple[FlaskClient, StaffUser]:
    """A new member of staff, signed in on a client of their own (for changes that end sessions)."""
    user = db.session.get(StaffUser, fresh_staff(role))
    client = world.app.test_client()
    assert AuthActions(client).login(role, email=user.email).status_code == 302
    return client, user


def test_preferences_are_saved_on_the_account_page(world):
    client, user = signed_in_client(world)
    mark = audit_mark()
    response = AuthActions(client).account_form("lang", language="zh_Hans_CN", timezone="Asia/Shanghai")
    assert answer(response) == (302, path("account.index"))
    saved = reread(StaffUser, user.id)
    assert (saved.language, saved.timezone) == ("zh_Hans_CN", "Asia/Shanghai")
    assert audited_ids("staff.edit", mark) == [str(user.id)]


def test_a_password_is_changed_on_the_account_page(world):
    client, user = signed_in_client(world)
    mark = audit_mark()
    response = AuthActions(client).change_password(TEST_PASSWORD, "Lantern-quietly-88-orchard")
    assert answer(response) == (302, path("account.index"))
    assert reread(StaffUser, user.id).check_password("Lantern-quietly-88-orchard")
    assert audited_ids("password.change", mark) == [str(user.id)]


def test_a_wrong_password_at_sign_in_is_refused_and_audited(world):
    client = world.app.test_client()
    form = page_form(client, path(f"{SIGN_IN}.login"))
    mark = audit_mark()
    response = client.post(
        form.action, data=form.values(email="agent@test.example", password="not it at all")
    )
    assert response.status_code == 200 and "Wrong email or password" in response.text
    assert [e.detail for e in audited("login.failed", mark)] == ["agent@test.example"]


def test_signing_out_ends_the_session(world):
    client, user = signed_in_client(world)
    token = token_on(client, path("account.index"), field="logout_token")
    mark = audit_mark()
    response = client.post(path(f"{SIGN_IN}.logout"), data={"logout_token": token})
    assert answer(response) == (302, path(f"{SIGN_IN}.login"))
    assert client.get(path("admin.index")).status_code == 302
    assert audited_ids("logout", mark) == [str(user.id)]


def other_session_ids(client: FlaskClient) -> list[int]:
    """The ids of the other sessions listed on the account page."""
    page = client.get(path("account.index")).text
    return [int(i) for i in re.findall(r'<tr data-session="(\d+)">', page)]


def test_signing_out_one_other_session_and_all_others_on_the_account_page(world):
    client, user = signed_in_client(world)
    others = [world.app.test_client() for _ in range(3)]
    for other in others:
        assert AuthActions(other).login("analyst", email=user.email).status_code == 302
    first, *rest = other_session_ids(client)
    token = token_on(client, path("account.index"), field="sessions-csrf_token")
    mark = audit_mark()
    response = client.post(path("account.end_session", session_id=first), data={"sessions-csrf_token": token})
    assert answer(response) == (302, path("account.index"))
    assert audited_ids("staff_session.end", mark) == [str(first)]
    assert sorted(other_session_ids(client)) == sorted(rest)
    response = client.post(path("account.end_others"), data={"sessions-csrf_token": token})
    assert answer(response) == (302, path("account.index"))
    assert audited_ids("staff_session.end", mark) == [str(first), *map(str, sorted(rest))]
    assert [other.get(path("admin.index")).status_code for other in others] == [302, 302, 302]
    assert client.get(path("admin.index")).status_code == 200


COVERED_POSTS = {
    "account.index",
    "account.end_others",
    "account.end_session",
    "customers.adjust_points",
    "customers.search",
    "customers.redeem",
    "search.index",
    f"{SIGN_IN}.forgot_password",
    f"{SIGN_IN}.reset_with_link",
    f"{SIGN_IN}.second_factor",
    f"{SIGN_IN}.enrol",
    "two_factor.index",
    "sign_in_throttles.index",
    "api_keys.issue",
    "purchase_import.index",
    "survey_invite.index",
    "survey_invite.sent",
    f"{SIGN_IN}.login",
    f"{SIGN_IN}.logout",
}


def test_every_post_endpoint_of_the_admin_has_a_case_here():
    app = collection_app()
    endpoints = staff_endpoints(app)
    posting = {
        r.endpoint for r in app.url_map.iter_rules() if r.endpoint in endpoints and "POST" in r.methods
    }
    covered = {e for e in posting if e.partition(".")[2] in STOCK_POSTS | set(TICKET_PAGE_POSTS)}
    assert posting - covered - COVERED_POSTS == set()


# Without a CSRF token nothing changes, whichever kind of form ---------------------------------
def test_a_model_form_without_its_token_stores_nothing(world):
    client = world.clients["agent"]
    page = path("customers.create_view")
    form = page_form(client, page)
    before = newest_id(model_of(world, "customers"))
    data = form.values(**create_values(world, "Customer"))
    del data["csrf_token"]
    response = client.post(page, data=data)
    assert response.status_code == 200  # the form again, with its error
    assert newest_id(model_of(world, "customers")) == before


def test_a_delete_without_its_token_deletes_nothing(world):
    holiday_id = fresh_holiday()
    listing = path("holidays.index_view")
    response = world.clients["admin"].post(
        path("holidays.delete_view"), data={"id": str(holiday_id), "url": listing}
    )
    assert answer(response) == (302, listing)
    assert reread(model_of(world, "holidays"), holiday_id) is not None


def test_a_bulk_action_without_its_token_changes_nothing(world):
    ticket_id = fresh_ticket()
    response = run_action(world, "agent", "tickets", "close", [ticket_id], token=False)
    assert answer(response) == (302, path("tickets.index_view"))
    assert ticket(world, ticket_id).status == "new"


def test_a_ticket_page_form_without_its_token_is_refused(world):
    ticket_id = fresh_ticket()
    response = world.clients["agent"].post(
        path("tickets.reply", ticket_id=ticket_id), data={"kind": "note", "body": "Sneaky"}
    )
    assert response.status_code == 400
    assert len(ticket(world, ticket_id).messages) == 1  # the first message only


def test_an_account_form_without_its_token_is_refused(world):
    client, user = signed_in_client(world)
    new = "Lantern-quietly-88-orchard"
    data = {"pw-current": TEST_PASSWORD, "pw-new": new, "pw-confirm": new, "pw-submit_password": "1"}
    response = client.post(path("account.index"), data=data)
    assert response.status_code == 400
    assert reread(StaffUser, user.id).check_password(TEST_PASSWORD)


def test_a_sign_in_without_its_token_is_refused(world):
    client = world.app.test_client()
    response = client.post(
        path(f"{SIGN_IN}.login"), data={"email": "agent@test.example", "password": TEST_PASSWORD}
    )
    assert response.status_code == 400
    assert answer(client.get(path("admin.index")))[0] == 302


def test_a_sign_out_without_its_token_is_refused(world):
    client, _user = signed_in_client(world)
    assert client.post(path(f"{SIGN_IN}.logout")).status_code == 400
    assert client.get(path("admin.index")).status_code == 200


def test_a_manager_redeems_a_reward_on_the_redemption_page(world):
    customer_id = fresh_customer()
    fresh_purchase(customer_id)  # 500 points; the world's reward costs 100
    client = world.clients["manager"]
    form = page_form(client, path("customers.redeem", customer_id=customer_id))
    before, mark = points_of(world, customer_id), audit_mark()
    response = client.post(form.action, data=form.values(reward=str(world.ids["reward"])))
    (redemption_id,) = audited_ids("redemption.create", mark)
    assert answer(response) == (302, path("customers.coupon", redemption_id=int(redemption_id)))
    assert points_of(world, customer_id) == before - 100
