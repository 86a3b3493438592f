"""The audit log: a read-only screen for admins."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from admin.base import StaffModelView


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
    column_default_sort = ("id", True)
    column_searchable_list = ["actor", "action", "object_id"]
    column_filters = ["at", "actor", "action", "object_type", "object_id"]
    column_sortable_list = ["at", "actor", "action"]
