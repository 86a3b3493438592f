"""The staff home page: an agent's queue, or the team's service and loyalty figures."""

from __future__ import annotations

import typing as t
from datetime import date, timedelta

from babel.dates import format_skeleton
from flask import url_for
from flask_admin import expose
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from admin.base import StaffIndexView, can_view_pii, staff_zone
from insights import home
from insights.survey_results import satisfaction_since
from models import db, utcnow
from models.tickets.feedback import shown_subject
from models.tickets.policy import PRIORITY_LABELS
from models.tickets.ticket import STATUS_LABELS
from models.user import Role

AGE_LABELS = {
    "lt_1d": _l("Under 1 day"),
    "1_3d": _l("1–3 days"),
    "3_7d": _l("3–7 days"),
    "7_30d": _l("7–30 days"),
    "gt_30d": _l("Over 30 days"),
}
PRIORITY_BADGES = {"low": "secondary", "normal": "info", "high": "warning", "urgent": "danger"}


def _week_label(day: date) -> str:
    return format_skeleton("MMMd", day, locale=get_locale())


def _month_label(day: date) -> str:
    return format_skeleton("yMMM", day, locale=get_locale())


def _list_url(admin, endpoint: str, sort: str | None = None, **filters: str | int) -> str:
    """A ticket list's URL, narrowed by its own equality filters (by column) and sorted by a column.

    Flask-Admin 2.2.1 names filters and sort columns in URLs by their position in the view
    (``flt0_4=…``, ``sort=8``); the positions are looked up here from the view itself, so the
    links follow the list's filters as they change. A filter the list lacks is left out.
    """
    view = next((v for v in admin._views if getattr(v, "endpoint", None) == endpoint), None)
    args: dict[str, t.Any] = {}
    if view is not None:
        for position, (column, value) in enumerate(filters.items()):
            for index, flt in enumerate(getattr(view, "_filters", None) or []):
                if getattr(getattr(flt, "column", None), "key", None) == column:
                    args[f"flt{position}_{view.get_filter_arg(index, flt)}"] = value
                    break
        names = [name for name, _label in getattr(view, "_list_columns", [])]
        if sort in names:
            args["sort"] = names.index(sort)
    return url_for(f"{endpoint}.index_view", **args)


def _queue_rows(items: list[home.QueueItem]) -> list[dict]:
    return [
        {
            "url": url_for("tickets.ticket_page", ticket_id=item.id),
            "reference": item.reference,
            "subject": shown_subject(item.subject, item.summary, can_view_pii()),
            "priority": str(PRIORITY_LABELS.get(item.priority, item.priority)),
            "badge": PRIORITY_BADGES.get(item.priority, "secondary"),
            "status": str(STATUS_LABELS.get(item.status, item.status)),
            "due": format_datetime(item.due, "yyyy-MM-dd HH:mm") if item.due else "",
            "breached": item.breached,
            "paused": item.paused,
        }
        for item in items
    ]


def chart(
    kind: str, title: str, labels: list[str], series: list[dict], y_title: str, unit: str = "", **options
):
    """What patron-charts.js draws: every word already in the reader's language."""
    return {
        "type": kind,
        "title": title,
        "labels": labels,
        "series": series,
        "y_title": y_title,
        "unit": unit,
    } | options


class DashboardView(StaffIndexView):
    @expose("/")
    def index(self):
        now = utcnow()
        session = db.session()
        if current_user.role == Role.AGENT:
            return self._agent_home(session, now)
        return self._team_home(session, now)

    def _agent_home(self, session, now):
        zone = staff_zone()
        counts = home.queue_counts(session, current_user.id, now, zone)
        me = current_user.id
        links = {
            "open": _list_url(self.admin, "tickets_mine"),
            "due_today": _list_url(self.admin, "tickets_mine", sort="resolution_due"),
            "overdue": _list_url(self.admin, "tickets_overdue", owner_id=me),
            "waiting": _list_url(self.admin, "tickets_mine", status="waiting_on_customer"),
            "unassigned": _list_url(self.admin, "tickets_unassigned"),
        }
        resolution, _response = home.sla_attainment(session, now)
        return self.render(
            "admin/dashboard.html",
            home_partial="admin/home_agent.html",
            page_heading=_("Your queue"),
            counts=counts,
            links=links,
            first=_queue_rows(home.needs_first(session, me, now)),
            unassigned=_queue_rows(home.unassigned_first(session, now)) if counts.unassigned else [],
            backlog_open=home.open_count(session),
            resolution=resolution,
        )

    def _team_home(self, session, now):
        zone = staff_zone()
        sla = home.sla_summary(session, now, zone)
        backlog = home.backlog(session, now)
        scores = home.satisfaction_trend(session, now, zone)
        points = home.points_by_month(session, now, zone)
        rewards = home.top_rewards(session, now)
        zh = str(get_locale() or "en").startswith("zh")
        percent = _("Share within SLA (%)")
        charts = {
            "sla": chart(
                "line",
                _("SLA attainment by week"),
                [_week_label(w.start) for w in sla.weeks],
                [
                    {"label": _("Resolved in time"), "data": [w.resolution.share for w in sla.weeks]},
                    {"label": _("First reply in time"), "data": [w.first_response.share for w in sla.weeks]},
                ],
                percent,
                "%",
                x_title=_("Week starting"),
                min=0,
                max=100,
                step=20,
            ),
            "backlog": chart(
                "bar",
                _("Open tickets by age"),
                [str(AGE_LABELS[key]) for key, _n in backlog.by_age],
                [{"label": _("Open tickets"), "data": [n for _key, n in backlog.by_age]}],
                _("Tickets"),
                x_title=_("Age"),
            ),
            "scores": chart(
                "line",
                _("NPS and CSAT by month"),
                [_month_label(m.start) for m in scores],
                [
                    {"label": _("NPS"), "data": [m.nps for m in scores]},
                    {"label": _("CSAT (%)"), "data": [m.csat for m in scores]},
                ],
                _("Score"),
                x_title=_("Month"),
                min=-100,
                max=100,
                step=50,
            ),
            "points": chart(
                "bar",
                _("Points issued and redeemed by month"),
                [_month_label(m.start) for m in points],
                [
                    {"label": _("Issued"), "data": [m.issued for m in points]},
                    {"label": _("Redeemed"), "data": [m.redeemed for m in points]},
                ],
                _("Points"),
                x_title=_("Month"),
            ),
            "rewards": chart(
                "bar",
                _("Top rewards, last 90 days"),
                [r.name_zh if zh else r.name_en for r in rewards],
                [{"label": _("Redemptions"), "data": [r.redemptions for r in rewards]}],
                _("Redemptions"),
                x_title=_("Reward"),
                horizontal=True,
            ),
        }
        drawn = {
            "sla": any(w.resolution.total or w.first_response.total for w in sla.weeks),
            "backlog": backlog.open > 0,
            "scores": any(m.nps_answers or m.csat_answers for m in scores),
            "points": any(m.issued or m.redeemed for m in points),
            "rewards": bool(rewards),
        }
        return self.render(
            "admin/dashboard.html",
            home_partial="admin/home_team.html",
            page_heading=_("Team overview"),
            titles={key: spec["title"] for key, spec in charts.items()},
            satisfaction=satisfaction_since(now - timedelta(days=30)),
            sla=sla,
            backlog=backlog,
            scores=scores,
            points=points,
            rewards=rewards,
            charts={key: spec for key, spec in charts.items() if drawn[key]},
            customers=home.customer_count(session),
            can_work=current_user.can("ticket.work"),
        )
