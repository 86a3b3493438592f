"""The staff home page."""

from __future__ import annotations

from flask_admin import expose

from admin.base import StaffIndexView
from insights.overview import customer_overview
from models import db, utcnow
from models.customer import CUSTOMER_LANGUAGES, SOURCE_LABELS


class DashboardView(StaffIndexView):
    @expose("/")
    def index(self):
        overview = customer_overview(db.session, utcnow())
        return self.render(
            "admin/dashboard.html",
            overview=overview,
            source_labels=SOURCE_LABELS,
            language_labels=CUSTOMER_LANGUAGES,
        )
