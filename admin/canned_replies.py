"""Canned replies: ready answers per language that managers keep for the whole team."""

from __future__ import annotations

from flask_admin.contrib.sqla.filters import BooleanEqualFilter, FilterEqual
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from wtforms import SelectField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, Length

from admin.base import StaffModelView
from models.customer import CUSTOMER_LANGUAGES
from models.tickets.canned import CANNED_LANGUAGES, CannedReply


def body_preview(view, context, model, name: str):
    """The first lines of the reply, as plain text."""
    text = " ".join(model.body.split())
    return Markup('<span class="text-muted">{}</span>').format(text[:120] + ("…" if len(text) > 120 else ""))


class CannedReplyView(StaffModelView):
    """Managers and admins keep the list; agents use it from the reply box of a ticket."""

    # Managers' right over what the team sends customers (survey wording, invitations): the same
    # people keep the replies, without a new right in the role table.
    right = "survey.manage"
    audit_type = "canned_reply"
    can_export = False
    column_list = ["title", "language", "body", "active", "updated_at"]
    column_default_sort = [("language", False), ("title", False)]
    column_searchable_list = ["title", "body"]
    column_filters = [
        FilterEqual(CannedReply.language, _l("Language"), options=list(CUSTOMER_LANGUAGES.items())),
        BooleanEqualFilter(CannedReply.active, _l("Offered")),
    ]
    column_labels = {
        "title": _l("Title"),
        "language": _l("Language"),
        "body": _l("Reply"),
        "active": _l("Offered"),
        "updated_at": _l("Last changed"),
    }
    column_formatters = {"body": body_preview}
    form_columns = ["title", "language", "body", "active"]
    form_overrides = {"language": SelectField, "body": TextAreaField}
    form_args = {
        "title": {"label": _l("Title"), "validators": [InputRequired(), Length(max=100)]},
        "language": {
            "label": _l("Language"),
            "choices": list(CUSTOMER_LANGUAGES.items()),
            "validators": [InputRequired(), AnyOf(CANNED_LANGUAGES)],
        },
        "body": {
            "label": _l("Reply"),
            "validators": [InputRequired(), Length(max=10000)],
            "description": _l(
                "Plain text. {customer_name} and {ticket_number} are filled in when the reply is inserted."
            ),
            "render_kw": {"rows": 8},
        },
        "active": {"label": _l("Offered on the reply box")},
    }
