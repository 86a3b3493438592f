"""Staff screens: Flask-Admin views, sign-in, role checks. Never imports `surveys`."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l

from admin.account import AccountView
from admin.api_keys import ApiKeyView
from admin.audit import AuditEventView
from admin.canned_replies import CannedReplyView
from admin.customers import CustomerView
from admin.dashboard import DashboardView
from admin.jobs import JobsView
from admin.loyalty import (
    EarningRuleView,
    LedgerView,
    PromotionView,
    PurchaseImportView,
    PurchaseView,
    RedemptionView,
    RewardView,
    TierView,
)
from admin.search import GlobalSearchView
from admin.sla import BusinessCalendarView, HolidayView, SlaPolicyView, TicketCategoryView
from admin.staff import StaffUserView
from admin.surveys import InvitationView, SurveyInviteView, SurveyResultsView, SurveyView
from admin.throttles import SignInThrottleView
from admin.tickets import DueSoonTicketView, MyTicketView, OverdueTicketView, TicketView, UnassignedTicketView
from admin.two_factor import TwoFactorView
from models import db
from models.api_key import ApiKey
from models.audit import AuditEvent
from models.customer import Customer
from models.loyalty.ledger import PointsEntry
from models.loyalty.programme import EarningRule, Promotion, Tier
from models.loyalty.purchases import Purchase
from models.loyalty.rewards import Redemption, Reward
from models.surveys.builder import Survey
from models.surveys.invitations import Invitation
from models.tickets.canned import CannedReply
from models.tickets.policy import BusinessCalendar, Holiday, SlaPolicy
from models.tickets.ticket import Ticket, TicketCategory
from models.user import StaffUser
from security import csp_nonce


def init_admin(app: Flask) -> Admin:
    """Create this app's Admin and its views (one Admin per app, never module-level)."""
    admin = Admin(
        app,
        name="Patron",
        theme=Bootstrap4Theme(base_template="admin/patron_base.html", fluid=True),
        index_view=DashboardView(name=_l("Home"), url="/admin"),
        csp_nonce_generator=csp_nonce,
    )
    admin.add_view(CustomerView(Customer, db, name=_l("Customers"), endpoint="customers"))
    tickets = _l("Tickets")
    for view, name, endpoint in [
        (TicketView, _l("All tickets"), "tickets"),
        (MyTicketView, _l("My queue"), "tickets_mine"),
        (UnassignedTicketView, _l("Unassigned"), "tickets_unassigned"),
        (DueSoonTicketView, _l("Due soon"), "tickets_due_soon"),
        (OverdueTicketView, _l("Overdue"), "tickets_overdue"),
    ]:
        admin.add_view(view(Ticket, db, name=name, endpoint=endpoint, category=tickets))
    admin.add_view(
        CannedReplyView(
            CannedReply, db, name=_l("Canned replies"), endpoint="canned_replies", category=tickets
        )
    )
    loyalty = _l("Loyalty")
    for view, model, name, endpoint in [
        (PurchaseView, Purchase, _l("Purchases"), "purchases"),
        (LedgerView, PointsEntry, _l("Points ledger"), "ledger"),
        (RewardView, Reward, _l("Rewards"), "rewards"),
        (RedemptionView, Redemption, _l("Redemptions"), "redemptions"),
        (PromotionView, Promotion, _l("Promotions"), "promotions"),
    ]:
        admin.add_view(view(model, db, name=name, endpoint=endpoint, category=loyalty))
    admin.add_view(
        PurchaseImportView(
            name=_l("Import purchases"),
            endpoint="purchase_import",
            url="/admin/purchase_import",
            category=loyalty,
        )
    )
    surveys = _l("Surveys")
    admin.add_view(SurveyView(Survey, db, name=_l("Surveys"), endpoint="survey_builder", category=surveys))
    admin.add_view(
        InvitationView(
            Invitation, db, name=_l("Invitations"), endpoint="survey_invitations", category=surveys
        )
    )
    admin.add_view(
        SurveyInviteView(
            name=_l("Invite"), endpoint="survey_invite", url="/admin/survey_invite", category=surveys
        )
    )
    admin.add_view(
        SurveyResultsView(
            name=_l("Results"), endpoint="survey_results", url="/admin/survey_results", category=surveys
        )
    )
    settings = _l("Settings")
    for view, model, name, endpoint in [
        (TicketCategoryView, TicketCategory, _l("Ticket categories"), "ticket_categories"),
        (SlaPolicyView, SlaPolicy, _l("SLA policies"), "sla_policies"),
        (BusinessCalendarView, BusinessCalendar, _l("Business hours"), "business_hours"),
        (HolidayView, Holiday, _l("Holidays"), "holidays"),
        (TierView, Tier, _l("Tiers"), "tiers"),
        (EarningRuleView, EarningRule, _l("Earning rule"), "earning_rule"),
        (ApiKeyView, ApiKey, _l("API keys"), "api_keys"),
    ]:
        admin.add_view(view(model, db, name=name, endpoint=endpoint, category=settings))
    admin.add_view(StaffUserView(StaffUser, db, name=_l("Staff"), endpoint="staff", category=settings))
    admin.add_view(AuditEventView(AuditEvent, db, name=_l("Audit log"), endpoint="audit", category=settings))
    admin.add_view(JobsView(name=_l("Jobs"), endpoint="jobs", url="/admin/jobs", category=settings))
    admin.add_view(
        SignInThrottleView(
            name=_l("Sign-in throttles"),
            endpoint="sign_in_throttles",
            url="/admin/sign_in_throttles",
            category=settings,
        )
    )
    admin.add_view(AccountView(name=_l("My account"), endpoint="account", url="/admin/account"))
    admin.add_view(GlobalSearchView(name=_l("Search"), endpoint="search", url="/admin/search"))
    admin.add_view(
        TwoFactorView(name=_l("Two-factor sign-in"), endpoint="two_factor", url="/admin/two_factor")
    )
    return admin
