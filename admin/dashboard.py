"""The staff home page."""

from __future__ import annotations

from datetime import timedelta

from flask_admin import expose

from admin.base import StaffIndexView
from insights.overview import customer_overview
from insights.survey_results import satisfaction_since
from models import db, utcnow
from models.customer import CUSTOMER_LANGUAGES, SOURCE_LABELS


class DashboardView(StaffIndexView):
    @expose("/")
    def index(self):
        now = utcnow()
        overview = customer_overview(db.session(), now)
        return self.render(
            "admin/dashboard.html",
            overview=overview,
            satisfaction=satisfaction_since(now - timedelta(days=30)),
            source_labels=SOURCE_LABELS,
            language_labels=CUSTOMER_LANGUAGES,
        )
