"""Ticket screens: the queues, the ticket page with its thread, and bulk actions."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from admin.base import can_view_pii, flash_busy, live_options
from admin.fields import OpensFromCustomerPage, known_customer
from admin.ticket_forms import (
    BulkAssignForm,
    BulkPriorityForm,
    FinishForm,
    MoveForm,
    PropertiesForm,
    ReplyForm,
    TakeForm,
    category_choices,
    owner_choices,
)
from models import db, utcnow
from models.contact import mask_email, mask_name, mask_phone
from models.customer import CUSTOMER_LANGUAGES, find_customer_id, record_customers_shown
from models.surveys.answers import response_for_follow_up
from models.tickets.attachments import (
    ALLOWED_LABEL,
    AttachmentRefused,
    CheckedFile,
    TicketAttachment,
    check_upload,
    human_size,
    max_bytes,
    read_file,
)
from models.tickets.canned import canned_replies_for
from models.tickets.feedback import shown_subject
from models.tickets.policy import PRIORITY_LABELS
from models.tickets.ticket import (
    CHANNEL_LABELS,
    MESSAGE_KIND_LABELS,
    SLA_STATE_LABELS,
    STATUS_LABELS,
    TRANSITIONS,
    NewTicket,
    Ticket,
    TicketCategory,
    TicketError,
    TicketMessage,
    active_categories,
    add_message,
    assign,
    breached_clause,
    change_priority,
    close_tickets,
    due_soon_clause,
    edit_ticket,
    finish_ticket,
    may_own_tickets,
    mine_clause,
    move_ticket,
    open_ticket,
    overdue_clause,
    take_ticket,
    take_tickets,
    ticket_owners,
    tickets_by_ids,
    unassigned_clause,
)
from models.uow import WriteBusy
from models.user import StaffUser

PRIORITY_BADGES = {"low": "secondary", "normal": "info", "high": "warning", "urgent": "danger"}


def reference_link(view, context, model: Ticket, name: str):
    return Markup('<a href="{}">{}</a>').format(url_for("tickets.ticket_page", ticket_id=model.id), model)


def subject_label(view, context, model: Ticket, name: str):
    """The subject; a web ticket's summary for staff who may see personal data."""
    return shown_subject(model.subject, model.summary, can_view_pii())


def customer_name_of(view, context, model: Ticket, name: str):
    """The customer's name (masked for roles without PII rights) and member number; for a web
    ticket from nobody known, the name given on the form. The customer is joined by the list
    query: one query for the page, one decryption per row."""
    pii = can_view_pii()
    if model.customer is not None:
        person = model.customer.display("name", pii) or model.customer.member_no
        return Markup('{} <small class="text-muted">{}</small>').format(person, model.customer.member_no)
    if model.contact_name:
        given = model.contact_name if pii else mask_name(model.contact_name)
        return Markup('{} <small class="text-muted">({})</small>').format(given, _("not a customer"))
    return ""


def status_label(view, context, model: Ticket, name: str):
    return STATUS_LABELS.get(model.status, model.status)


def priority_badge(view, context, model: Ticket, name: str):
    badge = PRIORITY_BADGES.get(model.priority, "secondary")
    return Markup('<span class="badge badge-{}">{}</span>').format(badge, PRIORITY_LABELS[model.priority])


def channel_label(view, context, model: Ticket, name: str):
    return CHANNEL_LABELS.get(model.channel, model.channel)


SLA_BADGES = {"paused": "secondary", "overdue": "danger", "breached": "warning", "due_soon": "warning"}


def sla_state(ticket: Ticket) -> tuple[str, str] | None:
    """(badge colour, label) for where the ticket stands against its SLA."""
    state = ticket.sla_state(utcnow())
    return (SLA_BADGES[state], str(SLA_STATE_LABELS[state])) if state else None


def sla_badge(view, context, model: Ticket, name: str):
    state = sla_state(model)
    if state is None:
        return ""
    return Markup('<span class="badge badge-{}">{}</span>').format(*state)


class BreachFilter(BaseSQLAFilter):
    """Tickets that missed (or are missing right now) a target."""

    def apply(self, query, value, alias=None):
        clause = breached_clause(utcnow())
        return query.filter(clause if value == "1" else sa.not_(clause))

    def operation(self):
        return _l("is")


def _labelled(labels: dict) -> list[tuple[str, str]]:
    return [(key, str(label)) for key, label in labels.items()]


class TicketView(OpensFromCustomerPage):
    """All tickets; subclasses narrow the list to a queue."""

    right = "ticket.view"
    endpoint_rights = {
        "create_view": "ticket.work",
        "edit_view": "ticket.work",
        "action_view": "ticket.work",
        "reply": "ticket.work",
        "move": "ticket.work",
        "take": "ticket.work",
        "finish": "ticket.work",
        # Files may hold personal data: only those who may read the thread may download them.
        "attachment": "customer.view_pii",
        "update": "ticket.work",
        "bulk_assign": "ticket.work",
        "bulk_priority": "ticket.work",
        "delete_view": "ticket.configure",
    }
    audit_type = "ticket"
    can_edit = False
    can_delete = False
    can_export = False
    column_display_actions = False  # the reference links to the ticket page
    list_template = "admin/ticket_list.html"
    column_list = [
        "reference",
        "subject",
        "customer",
        "status",
        "priority",
        "channel",
        "category",
        "owner",
        "first_response_due",
        "resolution_due",
        "sla",
        "csat_score",
        "created_at",
    ]
    column_labels = {
        "reference": _l("Reference"),
        "subject": _l("Subject"),
        "customer": _l("Customer"),
        "status": _l("Status"),
        "priority": _l("Priority"),
        "channel": _l("Channel"),
        "category": _l("Category"),
        "owner": _l("Owner"),
        "first_response_due": _l("First reply due"),
        "resolution_due": _l("Resolution due"),
        "sla": _l("SLA"),
        "csat_score": _l("CSAT"),
        "created_at": _l("Opened"),
    }
    column_formatters = {
        "reference": reference_link,
        "subject": subject_label,
        "status": status_label,
        "priority": priority_badge,
        "channel": channel_label,
        "customer": customer_name_of,
        "sla": sla_badge,
    }
    column_sortable_list = [
        "reference",
        "status",
        "priority",
        "first_response_due",
        "resolution_due",
        "csat_score",
        "created_at",
    ]
    column_default_sort = ("created_at", True)
    column_searchable_list = ["reference", "subject"]
    column_filters = [
        FilterEqual(Ticket.status, _l("Status"), options=lambda: _labelled(STATUS_LABELS)),
        FilterEqual(Ticket.priority, _l("Priority"), options=lambda: _labelled(PRIORITY_LABELS)),
        FilterEqual(Ticket.channel, _l("Channel"), options=lambda: _labelled(CHANNEL_LABELS)),
        FilterEqual(Ticket.category_id, _l("Category"), options=live_options(lambda: category_choices()[1:])),
        FilterEqual(Ticket.owner_id, _l("Owner"), options=live_options(lambda: owner_choices()[1:])),
        BreachFilter(Ticket.id, _l("SLA breached"), options=[("1", _l("Yes")), ("0", _l("No"))]),
    ]
    form_columns = ["customer_lookup", "subject", "channel", "category", "priority", "owner", "first_message"]
    form_overrides = {"channel": SelectField, "priority": SelectField}
    form_args = {
        "subject": {"label": _l("Subject"), "validators": [InputRequired(), Length(max=200)]},
        "channel": {"label": _l("Channel"), "choices": lambda: _labelled(CHANNEL_LABELS)},
        "priority": {
            "label": _l("Priority"),
            "choices": lambda: _labelled(PRIORITY_LABELS),
            "default": "normal",
        },
        "category": {"label": _l("Category"), "query_factory": active_categories},
        "owner": {"label": _l("Owner"), "query_factory": ticket_owners},
    }
    form_extra_fields = {
        "customer_lookup": StringField(
            _l("Customer"),
            validators=[Optional(), Length(max=254), known_customer],
            description=_l("Exact email, phone or member number; leave empty if unknown."),
        ),
        "first_message": TextAreaField(
            _l("What the customer said"), validators=[Optional(), Length(max=10000)]
        ),
    }
    queue_title = None

    # Queues -------------------------------------------------------------------------
    def queue_clause(self):
        """The WHERE clause of this view's queue; None for all tickets."""
        return None

    def get_query(self):
        clause = self.queue_clause()
        query = super().get_query()
        return query if clause is None else query.filter(clause)

    def get_count_query(self):
        clause = self.queue_clause()
        query = super().get_count_query()
        return query if clause is None else query.filter(clause)

    # Create: through the domain function, so the SLA clock and history start right.
    def create_model(self, form):
        spec = NewTicket(
            subject=form.subject.data,
            channel=form.channel.data,
            priority=form.priority.data,
            category=form.category.data,
            owner_id=getattr(form.owner.data, "id", None),
            customer_id=find_customer_id(form.customer_lookup.data),
            first_message=form.first_message.data or None,
        )
        try:
            with self.unit_of_work():
                ticket, _code = open_ticket(spec)
        except TicketError as exc:
            flash(str(exc), "error")
            return False
        except WriteBusy:
            flash_busy()  # Flask-Admin shows the form again with what was typed
            return False
        return ticket

    def get_save_return_url(self, model, is_created=False):
        return url_for("tickets.ticket_page", ticket_id=model.id)

    # The ticket page ---------------------------------------------------------------
    def render(self, template, **kwargs):
        """A list showing customers' names unmasked leaves an audit event, once it is rendered."""
        html = super().render(template, **kwargs)
        if template == self.list_template and kwargs.get("data") and can_view_pii():
            shown = [t.customer_id for t in kwargs["data"] if t.customer_id]  # read before the write
            with self.unit_of_work():
                record_customers_shown(shown, ["name"])
        return html

    def _ticket_or_404(self, ticket_id: int) -> Ticket:
        ticket = db.session.get(Ticket, ticket_id)
        if ticket is None:
            abort(404)
        return ticket

    @expose("/ticket/<int:ticket_id>")
    def ticket_page(self, ticket_id: int):
        if not can_view_pii():
            return self._render_ticket(self._ticket_or_404(ticket_id), pii=False)
        # Personal data is shown only once the view is audited.
        with self.unit_of_work(keep_state=True) as uow:
            ticket = self._ticket_or_404(ticket_id)
            uow.audit("ticket.view", "ticket", ticket.id, ["messages", "contact", "tracking_code"])
        return self._render_ticket(ticket, pii=True)

    def _render_ticket(
        self,
        ticket: Ticket,
        pii: bool,
        reply_form: ReplyForm | None = None,
        finish_form: FinishForm | None = None,
    ):
        properties = PropertiesForm(
            formdata=None,
            owner=str(ticket.owner_id or ""),
            priority=ticket.priority,
            category=str(ticket.category_id or ""),
        )
        can_work = current_user.can("ticket.work")
        return self.render(
            "admin/ticket.html",
            ticket=ticket,
            subject=shown_subject(ticket.subject, ticket.summary, pii),
            pii=pii,
            customer_name=self._customer_name(ticket, pii),
            contact=self._contact(ticket, pii),
            can_work=can_work,
            can_take=can_work
            and ticket.is_open
            and ticket.owner_id != current_user.id
            and may_own_tickets(current_user),
            moves=sorted(TRANSITIONS[ticket.status] - {"resolved", "closed"}, key=list(STATUS_LABELS).index),
            finishes=[status for status in ("resolved", "closed") if status in TRANSITIONS[ticket.status]],
            status_labels=STATUS_LABELS,
            kind_labels=MESSAGE_KIND_LABELS,
            channel_labels=CHANNEL_LABELS,
            priority_labels=PRIORITY_LABELS,
            language_labels=CUSTOMER_LANGUAGES,
            sla=sla_state(ticket),
            survey_response=response_for_follow_up(ticket.id),
            canned=self._canned(ticket, pii) if can_work else [],
            reply_form=reply_form or ReplyForm(formdata=None),
            finish_form=finish_form or FinishForm(formdata=None),
            move_form=MoveForm(formdata=None),
            take_form=TakeForm(formdata=None),
            properties_form=properties,
            attachment_limit=human_size(max_bytes()),
            attachment_kinds=ALLOWED_LABEL,
            file_size=human_size,
        )

    @staticmethod
    def _customer_name(ticket: Ticket, pii: bool) -> str:
        """The customer's name as this viewer may see it ("" when none is known)."""
        if ticket.customer is None:
            return ""
        return str(ticket.customer.display("name", pii) or "")

    @staticmethod
    def _canned(ticket: Ticket, pii: bool):
        """Canned replies for this ticket, the customer's language first, placeholders filled."""
        customer = ticket.customer
        name = (customer.name if customer else ticket.contact_name) if pii else None
        return canned_replies_for(customer.language if customer else None, name, str(ticket))

    @staticmethod
    def _contact(ticket: Ticket, pii: bool) -> dict[str, str]:
        values = {"name": ticket.contact_name, "email": ticket.contact_email, "phone": ticket.contact_phone}
        if pii:
            return {k: v for k, v in values.items() if v}
        masks = {"name": mask_name, "email": mask_email, "phone": mask_phone}
        return {k: masks[k](v) for k, v in values.items() if v}

    def _back(self, ticket_id: int):
        return redirect(url_for(".ticket_page", ticket_id=ticket_id))

    def _again(self, ticket_id: int, status: int, **forms):
        """The ticket page again with what was typed kept (the thread was audited when opened)."""
        page = self._render_ticket(self._ticket_or_404(ticket_id), can_view_pii(), **forms)
        return page, status, ({"Retry-After": "1"} if status == 503 else {})

    @expose("/ticket/<int:ticket_id>/reply", methods=("POST",))
    def reply(self, ticket_id: int):
        ticket = self._ticket_or_404(ticket_id)
        form = ReplyForm()
        if not form.validate_on_submit():
            flash(_("Write a message first."), "error")
            return self._again(ticket_id, 400, reply_form=form)
        try:
            files = checked_uploads()
        except AttachmentRefused as exc:
            flash(str(exc) + " " + _("Nothing was added; your message is still in the box."), "error")
            return self._again(ticket_id, 400, reply_form=form)
        try:
            with self.unit_of_work():
                add_message(ticket, form.kind.data, form.body.data, files=files)
        except TicketError as exc:
            flash(str(exc), "error")
            return self._again(ticket_id, 400, reply_form=form)
        except WriteBusy:
            flash_busy()
            return self._again(ticket_id, 503, reply_form=form)
        flash(_("Added to the thread."), "success")
        return self._back(ticket_id)

    @expose("/ticket/<int:ticket_id>/take", methods=("POST",))
    def take(self, ticket_id: int):
        """Assign to me (a new ticket is acknowledged too)."""
        ticket = self._ticket_or_404(ticket_id)
        if not TakeForm().validate_on_submit():
            return self._back(ticket_id)
        try:
            with self.unit_of_work():
                taken = take_ticket(ticket, current_user)
        except TicketError as exc:
            flash(str(exc), "error")
        except WriteBusy:
            flash_busy()
        else:
            if taken:
                flash(_("The ticket is yours now."), "success")
            else:
                flash(_("Only open tickets can be taken."), "error")
        return self._back(ticket_id)

    @expose("/ticket/<int:ticket_id>/finish", methods=("GET", "POST"))
    def finish(self, ticket_id: int):
        """Resolve or close with a confirmation and an optional reply: one page without script,
        a dialog on the ticket page with it; either way one POST does both."""
        ticket = self._ticket_or_404(ticket_id)
        form = FinishForm()
        if request.method == "GET":
            wanted = request.args.get("to", "resolved")
            form.to_status.data = wanted if wanted in ("resolved", "closed") else "resolved"
            return self._finish_page(ticket, form)
        if not form.validate_on_submit():
            flash(_("Choose valid values."), "error")
            return self._finish_page(ticket, form), 400
        to_status = form.to_status.data
        try:
            with self.unit_of_work() as uow:
                finish_ticket(ticket, to_status, form.reply.data)
        except TicketError as exc:  # the page says why, above the reply kept in its box
            return self._finish_page(self._ticket_or_404(ticket_id), form, problem=str(exc)), 400
        except WriteBusy:
            flash_busy()
            return self._finish_page(self._ticket_or_404(ticket_id), form), 503, {"Retry-After": "1"}
        flash(_("Status changed to %(status)s.", status=STATUS_LABELS[to_status]), "success")
        flash_survey_link(uow.notices)
        return self._back(ticket_id)

    def _finish_page(self, ticket: Ticket, form: FinishForm, problem: str | None = None):
        pii = can_view_pii()
        return self.render(
            "admin/ticket_finish.html",
            ticket=ticket,
            form=form,
            to_status=form.to_status.data,
            status_labels=STATUS_LABELS,
            language_labels=CUSTOMER_LANGUAGES,
            allowed=form.to_status.data in TRANSITIONS[ticket.status],
            problem=problem,
            canned=self._canned(ticket, pii),
        )

    @expose("/ticket/<int:ticket_id>/attachment/<int:attachment_id>")
    def attachment(self, ticket_id: int, attachment_id: int):
        """A file of the thread, as a download (never rendered by the browser as a page)."""
        query = (
            sa.select(TicketAttachment)
            .join(TicketMessage, TicketMessage.id == TicketAttachment.message_id)
            .where(TicketAttachment.id == attachment_id, TicketMessage.ticket_id == ticket_id)
        )
        with self.unit_of_work(keep_state=True) as uow:
            found = db.session.scalar(query)
            if found is None:
                abort(404)
            uow.audit("ticket.attachment_view", "ticket", ticket_id, ["attachments"], detail=str(found.id))
        data = read_file(found)
        response = Response(data, mimetype=found.content_type)
        response.headers["Content-Disposition"] = download_disposition(found.original_name)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    @expose("/ticket/<int:ticket_id>/move", methods=("POST",))
    def move(self, ticket_id: int):
        ticket = self._ticket_or_404(ticket_id)
        form = MoveForm()
        if not form.validate_on_submit():
            return self._back(ticket_id)
        try:
            with self.unit_of_work() as uow:
                move_ticket(ticket, form.to_status.data)
                status = ticket.status
        except TicketError as exc:
            flash(str(exc), "error")
        except WriteBusy:
            flash_busy()
        else:
            flash(_("Status changed to %(status)s.", status=STATUS_LABELS[status]), "success")
            flash_survey_link(uow.notices)  # what the event handlers left for the agent
        return self._back(ticket_id)

    @expose("/ticket/<int:ticket_id>/update", methods=("POST",))
    def update(self, ticket_id: int):
        ticket = self._ticket_or_404(ticket_id)
        form = PropertiesForm()
        if not form.validate_on_submit():
            flash(_("Choose valid values."), "error")
            return self._back(ticket_id)
        try:
            with self.unit_of_work():
                owner = _chosen(StaffUser, form.owner.data)
                edit_ticket(ticket, owner, form.priority.data, _chosen(TicketCategory, form.category.data))
        except TicketError as exc:
            flash(str(exc), "error")
        except WriteBusy:
            flash_busy()
        else:
            flash(_("Ticket updated."), "success")
        return self._back(ticket_id)

    # Bulk actions ------------------------------------------------------------------
    @action("take", _l("Assign to me"))
    def action_take(self, ids):
        try:
            with self.unit_of_work():
                taken, skipped = take_tickets(tickets_by_ids(ids), current_user)
        except TicketError as exc:
            flash(str(exc), "error")
            return
        except WriteBusy:
            flash_busy()
            return
        flash(
            _(
                "%(taken)d tickets assigned to you, %(skipped)d skipped (not open).",
                taken=taken,
                skipped=skipped,
            ),
            "success",
        )

    @action("assign", _l("Assign…"))
    def action_assign(self, ids):
        return redirect(url_for(".bulk_assign", ids=",".join(ids)))

    @action("priority", _l("Change priority…"))
    def action_priority(self, ids):
        return redirect(url_for(".bulk_priority", ids=",".join(ids)))

    @action("close", _l("Close"), _l("Close the selected tickets?"))
    def action_close(self, ids):
        try:
            with self.unit_of_work() as uow:
                closed_tickets, skipped = close_tickets(tickets_by_ids(ids))
                closed = len(closed_tickets)
        except WriteBusy:
            flash_busy()
            return
        flash(
            _("%(closed)d tickets closed, %(skipped)d already closed.", closed=closed, skipped=skipped),
            "success",
        )
        if closed == 1:  # the one link the unit of work keeps then belongs to that ticket
            flash_survey_link(uow.notices)

    def _bulk_page(self, form, apply, template_title):
        ids = (form.ids.data or request.args.get("ids", "")).split(",")
        tickets = tickets_by_ids(ids)
        if not tickets:
            flash(_("Select at least one ticket."), "error")
            return redirect(url_for(".index_view"))
        if request.method == "POST" and form.validate_on_submit():
            try:
                with self.unit_of_work():
                    for ticket in tickets:
                        apply(ticket)
            except TicketError as exc:
                flash(str(exc), "error")
            except WriteBusy:
                flash_busy()  # the form again, with the choice made
            else:
                flash(_("%(n)d tickets updated.", n=len(tickets)), "success")
                return redirect(url_for(".index_view"))
        form.ids.data = ",".join(str(t.id) for t in tickets)
        return self.render("admin/ticket_bulk.html", form=form, tickets=tickets, title=template_title)

    @expose("/bulk/assign", methods=("GET", "POST"))
    def bulk_assign(self):
        form = BulkAssignForm()

        def apply(ticket):
            assign(ticket, _chosen(StaffUser, form.owner.data), detail="bulk")

        return self._bulk_page(form, apply, _("Assign tickets"))

    @expose("/bulk/priority", methods=("GET", "POST"))
    def bulk_priority(self):
        form = BulkPriorityForm()

        def apply(ticket):
            change_priority(ticket, form.priority.data, detail="bulk")

        return self._bulk_page(form, apply, _("Change priority"))


def download_disposition(name: str) -> str:
    """Content-Disposition for a download: an ASCII name for old clients, the real one (RFC 6266)."""
    stem, dot, extension = name.rpartition(".")
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().strip()
    plain = re.sub(r"[^A-Za-z0-9 ._-]", "_", plain) or "attachment"
    return f"attachment; filename=\"{plain}{dot}{extension}\"; filename*=UTF-8''{quote(name)}"


def checked_uploads() -> list[CheckedFile]:
    """The files sent with a reply, each checked by size and content (AttachmentRefused if not)."""
    files = []
    for upload in request.files.getlist("files"):
        if not upload or not upload.filename:
            continue  # the empty part a browser sends for an empty file box
        data = upload.stream.read(max_bytes() + 1)  # one byte more tells "too large"
        files.append(check_upload(upload.filename, data))
    return files


def _chosen(model, value: str | None):
    """The row a picker chose (by id), or None for the blank choice."""
    return db.session.get(model, int(value)) if value else None


def flash_survey_link(notices: dict) -> None:
    """Show the satisfaction survey link a resolution made, once, for the agent to pass on."""
    token = notices.get("survey_link")
    if token:
        link = url_for("surveys.invitation", token=token, _external=True)
        flash(
            Markup("{} <code id='csat-link'>{}</code>").format(
                _("Satisfaction survey link for the customer (shown once):"), link
            ),
            "info",
        )


class OverdueTicketView(TicketView):
    def queue_clause(self):
        return overdue_clause(utcnow())


class DueSoonTicketView(TicketView):
    def queue_clause(self):
        return due_soon_clause(utcnow())


class MyTicketView(TicketView):
    def queue_clause(self):
        return mine_clause(current_user.id)


class UnassignedTicketView(TicketView):
    def queue_clause(self):
        return unassigned_clause()
