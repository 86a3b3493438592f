"""Admin settings for ticket handling: categories, SLA policies, business hours, holidays."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, ValidationError
from wtforms.validators import InputRequired, NumberRange

from admin.base import StaffModelView, as_code
from models.tickets.policy import PRIORITY_LABELS, parse_weekly_hours
from models.user import timezone_names


def priority_label(view, context, model, name):
    value = getattr(model, name)
    return PRIORITY_LABELS.get(value, value or "—")


class TicketSettingsView(StaffModelView):
    right = "ticket.configure"
    can_export = False


class TicketCategoryView(TicketSettingsView):
    audit_type = "ticket_category"
    can_delete = False  # tickets point at categories: deactivate instead
    column_list = ["position", "code", "name_en", "name_zh", "active"]
    column_default_sort = "position"
    column_formatters = {"code": as_code}
    column_formatters_export: dict = {}
    column_labels = {
        "position": _l("Order"),
        "code": _l("Code"),
        "name_en": _l("English name"),
        "name_zh": _l("Chinese name"),
        "active": _l("Active"),
    }
    form_columns = ["code", "name_en", "name_zh", "position", "active"]
    form_args = {
        "code": {"validators": [InputRequired()], "label": _l("Code")},
        "name_en": {"validators": [InputRequired()], "label": _l("English name")},
        "name_zh": {"validators": [InputRequired()], "label": _l("Chinese name")},
    }


def _priority_choices(blank: bool):
    choices = [(key, label) for key, label in PRIORITY_LABELS.items()]
    return ([("", _l("Do not escalate"))] if blank else []) + choices


class SlaPolicyView(TicketSettingsView):
    audit_type = "sla_policy"
    can_create = False
    can_delete = False
    column_list = ["priority", "first_response_minutes", "resolution_minutes", "escalate_to"]
    column_labels = {
        "priority": _l("Priority"),
        "first_response_minutes": _l("First reply within (business minutes)"),
        "resolution_minutes": _l("Resolve within (business minutes)"),
        "escalate_to": _l("On breach, raise to"),
    }
    column_formatters = {"priority": priority_label, "escalate_to": priority_label}
    form_columns = ["first_response_minutes", "resolution_minutes", "escalate_to"]
    form_overrides = {"escalate_to": SelectField}
    form_args = {
        "first_response_minutes": {"validators": [InputRequired(), NumberRange(min=1, max=525600)]},
        "resolution_minutes": {"validators": [InputRequired(), NumberRange(min=1, max=525600)]},
        "escalate_to": {"choices": _priority_choices(blank=True)},
    }

    def on_model_change(self, form, model, is_created):
        model.escalate_to = model.escalate_to or None
        super().on_model_change(form, model, is_created)


def valid_hours(form, field) -> None:
    try:
        parse_weekly_hours(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def valid_zone(form, field) -> None:
    if field.data not in timezone_names():
        raise ValidationError(str(_l("Choose a time zone from the list.")))


class BusinessCalendarView(TicketSettingsView):
    audit_type = "business_calendar"
    can_create = False
    can_delete = False
    column_list = ["timezone", "weekly_hours"]
    column_labels = {"timezone": _l("Time zone"), "weekly_hours": _l("Opening hours")}
    form_columns = ["timezone", "weekly_hours"]
    form_overrides = {"timezone": SelectField}
    form_args = {
        "timezone": {"choices": lambda: [(z, z) for z in timezone_names()], "validators": [valid_zone]},
        "weekly_hours": {
            "validators": [valid_hours],
            "description": _l(
                "Empty for 24×7. Otherwise JSON by weekday (0 = Monday), e.g. "
                '{"0": ["09:00", "18:00"], "5": ["10:00", "16:00"]}; days not listed are closed.'
            ),
        },
    }


class HolidayView(TicketSettingsView):
    audit_type = "holiday"
    column_list = ["day", "name"]
    column_default_sort = ("day", True)
    column_labels = {"day": _l("Date"), "name": _l("Holiday")}
    form_columns = ["day", "name"]
