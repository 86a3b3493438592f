"""Staff screens: Flask-Admin views, sign-in, role checks. Never imports `surveys`."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l

from admin.account import AccountView
from admin.audit import AuditEventView
from admin.customers import CustomerView
from admin.dashboard import DashboardView
from admin.staff import StaffUserView
from models import db
from models.audit import AuditEvent
from models.customer import Customer
from models.user import StaffUser


def init_admin(app: Flask) -> Admin:
    """Create this app's Admin and its views (one Admin per app, never module-level)."""
    admin = Admin(
        app,
        name="Patron",
        theme=Bootstrap4Theme(base_template="admin/patron_base.html", fluid=True),
        index_view=DashboardView(name=_l("Home"), url="/admin"),
    )
    admin.add_view(CustomerView(Customer, db, name=_l("Customers"), endpoint="customers"))
    admin.add_view(
        StaffUserView(StaffUser, db, name=_l("Staff"), endpoint="staff", category=_l("Settings"))
    )
    admin.add_view(
        AuditEventView(AuditEvent, db, name=_l("Audit log"), endpoint="audit", category=_l("Settings"))
    )
    admin.add_view(AccountView(name=_l("My account"), endpoint="account", url="/admin/account"))
    return admin
