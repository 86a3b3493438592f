"""Who may open what: every registered admin endpoint, for every role and for anonymous visitors."""

from __future__ import annotations

import pytest
from flask import url_for

from admin.base import StaffAccess
from models.user import Role, role_has

ROLES = [r.value for r in Role]
EVERYONE = set(ROLES)
PII_ROLES = {"admin", "manager", "agent"}

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
)


def admin_endpoints(app) -> list[tuple[str, str, StaffAccess]]:
    """(endpoint, method, view) for every URL rule that belongs to an admin view."""
    found = []
    for admin in app.extensions["admin"]:
        views = {view.endpoint: view for view in admin._views}
        for rule in app.url_map.iter_rules():
            prefix, _, name = rule.endpoint.partition(".")
            if prefix in views and name != "static":
                method = "GET" if "GET" in rule.methods else "POST"
                found.append((rule.endpoint, method, views[prefix]))
    return sorted(found, key=lambda item: item[0])


def expected_roles(endpoint: str, view: StaffAccess) -> set[str]:
    """Roles that may use an endpoint, according to the view's own declaration."""
    name = endpoint.partition(".")[2]
    extra = view.endpoint_rights.get(name)
    return {r for r in ROLES if role_has(r, view.right) and (extra is None or role_has(r, extra))}


def url_of(app, endpoint: str) -> str:
    """A URL for the endpoint, with a plausible value for each of its arguments."""
    (rule,) = app.url_map.iter_rules(endpoint)
    values = {name: "csv" if name == "export_type" else 1 for name in rule.arguments}
    with app.test_request_context():
        return url_for(endpoint, _external=False, **values)


def test_every_admin_view_uses_the_staff_access_base(app):
    for admin in app.extensions["admin"]:
        for view in admin._views:
            assert isinstance(view, StaffAccess), f"{view.endpoint} bypasses the role checks"


def test_declarations_match_the_written_rights(app):
    for endpoint, _method, view in admin_endpoints(app):
        declared = expected_roles(endpoint, view)
        if endpoint in EXPECTED:
            assert declared == EXPECTED[endpoint], endpoint
        if endpoint.startswith(ADMIN_ONLY_PREFIXES):
            assert declared == {"admin"}, endpoint


def test_anonymous_visitors_are_sent_to_the_login_page(app, client):
    endpoints = admin_endpoints(app)
    assert len(endpoints) > 20
    for endpoint, method, _view in endpoints:
        response = client.open(url_of(app, endpoint), method=method)
        assert response.status_code == 302, endpoint
        assert "/login" in response.location, endpoint


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_its_views(app, client, auth, role):
    auth.login(role)
    for endpoint, method, view in admin_endpoints(app):
        response = client.open(url_of(app, endpoint), method=method)
        if role in expected_roles(endpoint, view):
            assert response.status_code != 403, f"{role} refused {endpoint}"
            assert "/login" not in (response.location or ""), endpoint
            assert response.status_code < 500, f"{role} {endpoint}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} reached {endpoint} ({response.status_code})"


@pytest.mark.parametrize("role", ["manager", "agent", "analyst"])
def test_menu_hides_what_a_role_cannot_open(client, auth, role):
    auth.login(role)
    page = client.get("/admin/").text
    assert ("/admin/audit/" in page) is False
    assert ("/admin/staff/" in page) is False
    assert "/admin/customers/" in page


def test_admin_sees_settings_in_the_menu(client, auth):
    auth.login(Role.ADMIN)
    page = client.get("/admin/").text
    assert "/admin/audit/" in page and "/admin/staff/" in page
