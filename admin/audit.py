"""The audit log: a read-only screen for admins."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from admin.base import StaffModelView
from models.audit import RECORD_LABELS, action_label
from models.labels import label


def action_text(view, context, model, name: str) -> str:
    """What was done, as a person reads it (`customer.view` is "Customer: viewed")."""
    return action_label(model.action)


def record_type_text(view, context, model, name: str) -> str:
    """The kind of record, as a person reads it."""
    return label(RECORD_LABELS, model.object_type) if model.object_type else ""


class AuditEventView(StaffModelView):
    right = "audit.view"
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_export = True
    action_disallowed_list = ["delete"]
    column_list = ["at", "actor", "action", "object_type", "object_id", "fields", "ip"]
    column_labels = {
        "at": _l("Time"),
        "actor": _l("Who"),
        "action": _l("Action"),
        "object_type": _l("Record type"),
        "object_id": _l("Record"),
        "fields": _l("Fields"),
        "detail": _l("Detail"),
        "ip": _l("IP address"),
    }
    column_formatters = {"action": action_text, "object_type": record_type_text}
    column_formatters_export = column_formatters
    empty_message = _l("Nothing has been audited yet.")
    column_default_sort = ("id", True)
    column_searchable_list = ["actor", "action", "object_id"]
    column_filters = ["at", "actor", "action", "object_type", "object_id"]
    column_sortable_list = ["at", "actor", "action"]
