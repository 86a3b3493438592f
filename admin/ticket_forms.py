"""Forms on the ticket page and the bulk-action pages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, MultipleFileField, RadioField, SelectField, SubmitField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, Length, Optional

from models.tickets.policy import PRIORITY_LABELS
from models.tickets.ticket import MESSAGE_KIND_LABELS, active_categories, ticket_owners
from security import CheckedForm


def owner_choices() -> list[tuple[str, str]]:
    """Everyone who may own tickets, for owner pickers."""
    return [("", str(_l("Nobody")))] + [(str(u.id), str(u)) for u in ticket_owners()]


def category_choices() -> list[tuple[str, str]]:
    return [("", str(_l("None")))] + [(str(c.id), str(c)) for c in active_categories()]


PRIORITY_CHOICES = [(key, label) for key, label in PRIORITY_LABELS.items()]


class ReplyForm(CheckedForm):
    kind = RadioField(
        _l("Send as"),
        choices=[
            ("outbound", MESSAGE_KIND_LABELS["outbound"]),
            ("note", MESSAGE_KIND_LABELS["note"]),
            ("inbound", MESSAGE_KIND_LABELS["inbound"]),
        ],
        default="outbound",
    )
    body = TextAreaField(_l("Message"), validators=[InputRequired(), Length(max=10000)])
    files = MultipleFileField(_l("Attach files"))
    submit = SubmitField(_l("Add to the thread"))


class FinishForm(CheckedForm):
    """Resolve or close, with an optional last reply to the customer (one step)."""

    to_status = HiddenField(validators=[InputRequired(), AnyOf(("resolved", "closed"))])
    reply = TextAreaField(
        _l("Reply to the customer (optional)"),
        validators=[Optional(), Length(max=10000)],
        description=_l("Sent with the change; leave empty to change the status only."),
    )


class TakeForm(CheckedForm):
    """Assign to me: nothing but the CSRF token."""


class MoveForm(CheckedForm):
    to_status = HiddenField(validators=[InputRequired()])


class PropertiesForm(CheckedForm):
    owner = SelectField(_l("Owner"))
    priority = SelectField(_l("Priority"), choices=PRIORITY_CHOICES)
    category = SelectField(_l("Category"))
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner.choices = owner_choices()
        self.category.choices = category_choices()


class BulkAssignForm(CheckedForm):
    ids = HiddenField(validators=[InputRequired()])
    owner = SelectField(_l("Owner"))
    submit = SubmitField(_l("Assign"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner.choices = owner_choices()


class BulkPriorityForm(CheckedForm):
    ids = HiddenField(validators=[InputRequired()])
    priority = SelectField(_l("Priority"), choices=PRIORITY_CHOICES)
    submit = SubmitField(_l("Change priority"))
