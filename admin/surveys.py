"""Survey screens: the builder, invitations and their links, and the results."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from babel.lists import format_list
from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual, FilterNotEqual
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from wtforms import DateField, IntegerField, SelectField, StringField, TextAreaField, ValidationError
from wtforms.validators import DataRequired, NumberRange, Optional

from admin.base import (
    StaffModelView,
    StaffView,
    can_view_pii,
    flash_busy,
    from_local,
    staff_unit_of_work,
    staff_zone,
    stream_csv,
)
from admin.fields import known_customer, member_no_of
from insights.survey_results import responses_query, survey_overview, survey_report
from models import db, utcnow
from models.customer import CUSTOMER_LANGUAGES, find_customer_id, member_numbers
from models.loyalty.programme import tiers
from models.surveys.answers import Answer
from models.surveys.builder import (
    QUESTION_KIND_LABELS,
    QUESTION_KINDS,
    Question,
    Survey,
    SurveyError,
    check_deletable,
    prepare_survey,
)
from models.surveys.invitations import (
    INVITATION_LABELS,
    INVITATION_STATUSES,
    MAX_INVITATIONS,
    Invitation,
    invite_customers,
    mark_sent,
    purchase_for,
    segment_query,
    segment_size,
    selection_confirmed,
    selection_token,
    status_now_expression,
)
from models.surveys.scales import SCALES, nps_band
from models.uow import WriteBusy
from security import CheckedForm

# Detractors red, passives grey, promoters green.
BAND_COLOURS = {"detractor": "#c0392b", "passive": "#a0a7ae", "promoter": "#27ae60"}
NPS_LOW, NPS_HIGH = SCALES["nps"]
NPS_COLOURS = {str(v): BAND_COLOURS[nps_band(v)] for v in range(NPS_LOW, NPS_HIGH + 1)}


def survey_links(view, context, model: Survey, name: str):
    links = [(url_for("survey_results.results", survey_id=model.id), _("Results"))]
    if current_user.can("survey.invite"):
        links.append((url_for("survey_invite.index", survey_id=model.id), _("Invite")))
    return Markup(" · ").join(Markup('<a href="{}">{}</a>').format(href, text) for href, text in links)


def public_url(view, context, model: Survey, name: str):
    if not (model.public_link and model.public_slug):
        return ""
    url = url_for("surveys.public_survey", slug=model.public_slug, _external=True)
    return Markup('<a href="{0}" target="_blank" rel="noopener">{0}</a>').format(url)


class SurveyView(StaffModelView):
    """The builder: a survey and its ordered questions, edited on one page."""

    right = "survey.view"
    endpoint_rights = {
        "create_view": "survey.manage",
        "edit_view": "survey.manage",
        "delete_view": "survey.manage",
        "action_view": "survey.manage",
        "export": "survey.manage",
    }
    audit_type = "survey"
    column_list = ["title", "language", "opens_at", "closes_at", "public_link", "send_on_resolution", "links"]
    column_labels = {
        "title": _l("Title"),
        "language": _l("Language"),
        "intro": _l("Introduction"),
        "thank_you": _l("Thank-you text"),
        "opens_at": _l("Opens"),
        "closes_at": _l("Closes"),
        "public_link": _l("Anonymous link"),
        "public_slug": _l("Link name"),
        "detractor_nps": _l("Follow-up at NPS ≤"),
        "send_on_resolution": _l("Sent when a ticket is resolved"),
        "links": _l("Open"),
        "public_url": _l("Anonymous link"),
        "created_at": _l("Created"),
        "questions": _l("Questions"),
    }
    column_formatters = {
        "language": lambda v, c, m, n: CUSTOMER_LANGUAGES.get(m.language, m.language),
        "links": survey_links,
        "public_url": public_url,
    }
    column_formatters_export = {"language": column_formatters["language"]}
    column_details_list = [
        "title",
        "language",
        "intro",
        "thank_you",
        "opens_at",
        "closes_at",
        "public_url",
        "detractor_nps",
        "send_on_resolution",
        "created_at",
    ]
    column_sortable_list = ["title", "opens_at", "closes_at"]
    column_default_sort = ("id", True)
    column_searchable_list = ["title"]
    column_filters = ["language", "public_link", "send_on_resolution", "opens_at"]
    can_view_details = True
    create_template = "admin/survey_create.html"
    edit_template = "admin/survey_edit.html"
    form_columns = [
        "title",
        "language",
        "intro",
        "thank_you",
        "opens_at",
        "closes_at",
        "public_link",
        "public_slug",
        "detractor_nps",
        "send_on_resolution",
    ]
    form_overrides = {"language": SelectField, "intro": TextAreaField, "thank_you": TextAreaField}
    form_args = {
        "title": {"label": _l("Title"), "validators": [DataRequired()]},
        "language": {
            "label": _l("Language"),
            "choices": list(CUSTOMER_LANGUAGES.items()),
            "description": _l("The language the questions are written in."),
        },
        "intro": {"label": _l("Introduction"), "description": _l("Shown above the questions.")},
        "thank_you": {"label": _l("Thank-you text"), "description": _l("Shown after the answers are sent.")},
        "public_link": {
            "label": _l("Anonymous link"),
            "description": _l("Anyone with the link may answer, without an invitation."),
        },
        "public_slug": {
            "label": _l("Link name"),
            "description": _l("The end of the anonymous link; leave empty for a random one."),
        },
        "detractor_nps": {
            "label": _l("Follow-up at NPS ≤"),
            "validators": [NumberRange(0, 10)],
            "description": _l(
                "An NPS answer at or under this opens a follow-up ticket (CSAT 1–2 always does)."
            ),
        },
        "send_on_resolution": {
            "label": _l("Sent when a ticket is resolved"),
            "description": _l(
                "The customer of a resolved ticket is invited; the score is kept on the ticket."
            ),
        },
    }
    inline_models = [
        (
            Question,
            {
                "form_columns": ["id", "position", "kind", "prompt", "required", "options"],
                "form_overrides": {"kind": SelectField, "options": TextAreaField},
                "form_args": {
                    "position": {
                        "label": _l("Order"),
                        "default": None,
                        "validators": [Optional()],
                        "description": _l("1, 2, 3…; empty puts the question last."),
                    },
                    "kind": {
                        "label": _l("Type"),
                        "choices": [(k, QUESTION_KIND_LABELS[k]) for k in QUESTION_KINDS],
                    },
                    "prompt": {"label": _l("Question"), "validators": [DataRequired()]},
                    "required": {"label": _l("Required")},
                    "options": {
                        "label": _l("Options"),
                        "description": _l("Choice questions: one option per line."),
                    },
                },
                "column_labels": {"questions": _l("Questions")},
            },
        )
    ]

    # Flask-Admin shows a ValidationError's message and keeps the form; the rules are the builder's.
    def on_model_change(self, form, model: Survey, is_created: bool) -> None:
        try:
            prepare_survey(model)
        except SurveyError as exc:
            raise ValidationError(str(exc)) from None
        super().on_model_change(form, model, is_created)

    def on_model_delete(self, model: Survey) -> None:
        try:
            check_deletable(model)
        except SurveyError as exc:
            raise ValidationError(str(exc)) from None
        super().on_model_delete(model)


def invitation_status(view, context, model: Invitation, name: str):
    """Where the invitation stands now: expired once past its expiry, whatever was last stored."""
    status = model.status_at()
    return INVITATION_LABELS.get(status, status)


def invitation_context(view, context, model: Invitation, name: str):
    if model.ticket_id:
        return _("Ticket #%(id)d", id=model.ticket_id)
    if model.purchase_id:
        return _("Purchase #%(id)d", id=model.purchase_id)
    return ""


# The status filter compares where an invitation stands now, as the list shows it; Flask-Admin
# 2.2.1's filters compare the column (`apply` as in flask_admin/contrib/sqla/filters.py).
class StatusNowEqual(FilterEqual):
    def apply(self, query, value, alias=None):
        return query.filter(status_now_expression(utcnow()) == value)


class StatusNowNotEqual(FilterNotEqual):
    def apply(self, query, value, alias=None):
        return query.filter(status_now_expression(utcnow()) != value)


STATUS_CHOICES = [(s, INVITATION_LABELS[s]) for s in INVITATION_STATUSES]


class InvitationView(StaffModelView):
    """Invitations and where each stands; links are shown once, when they are created."""

    right = "survey.view"
    endpoint_rights = {"action_view": "survey.invite", "export": "survey.export"}
    audit_type = "survey_invitation"
    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    column_list = ["survey", "customer", "status", "context", "created_at", "expires_at", "responded_at"]
    column_labels = {
        "survey": _l("Survey"),
        "customer": _l("Customer"),
        "status": _l("Status"),
        "context": _l("Context"),
        "created_at": _l("Created"),
        "expires_at": _l("Expires"),
        "opened_at": _l("Opened"),
        "responded_at": _l("Responded"),
    }
    column_formatters = {
        "status": invitation_status,
        "customer": member_no_of,
        "context": invitation_context,
    }
    column_formatters_export = column_formatters
    column_sortable_list = ["status", "created_at", "expires_at", "responded_at"]
    column_default_sort = ("created_at", True)
    column_filters = [
        "survey",
        StatusNowEqual(Invitation.status, _l("Status"), options=STATUS_CHOICES),
        StatusNowNotEqual(Invitation.status, _l("Status"), options=STATUS_CHOICES),
        "created_at",
        "responded_at",
    ]
    column_choices = {"status": STATUS_CHOICES}

    @action("mark_sent", _l("Mark as sent"), _l("Mark the selected invitations as given to their customers?"))
    def action_mark_sent(self, ids):
        mark_invitations_sent(picked_ids(",".join(ids)))


def mark_invitations_sent(ids: list[int]) -> None:
    """Mark invitations as given to their customers (by hand, until email delivery exists)."""
    try:
        with staff_unit_of_work():
            invitations = db.session.scalars(sa.select(Invitation).where(Invitation.id.in_(ids))).all()
            changed = mark_sent(list(invitations))
    except WriteBusy:
        flash_busy()
        return
    message = ngettext("%(num)d invitation marked as sent.", "%(num)d invitations marked as sent.", changed)
    flash(message, "success")


# Invitations ------------------------------------------------------------------------------
def survey_choices() -> list[tuple[str, str]]:
    """Surveys still taking answers (or not yet open), newest first."""
    now = utcnow()
    still_open = sa.or_(Survey.closes_at.is_(None), Survey.closes_at > now)
    surveys = db.session.scalars(sa.select(Survey).where(still_open).order_by(Survey.id.desc()))
    return [(str(s.id), s.title) for s in surveys]


class InviteForm(CheckedForm):
    survey = SelectField(_l("Survey"), validators=[DataRequired()])
    days_valid = IntegerField(
        _l("Valid for (days)"), default=14, validators=[DataRequired(), NumberRange(1, 365)]
    )
    ids = StringField(validators=[Optional()])  # customers picked on the customer list
    customer = StringField(
        _l("One customer"),
        validators=[Optional(), known_customer],
        description=_l("Exact email, phone or member number."),
    )
    order_ref = StringField(
        _l("About the order (optional)"),
        validators=[Optional()],
        description=_l("The order reference of this customer's purchase the survey is about."),
    )
    tag = StringField(_l("Tag"), validators=[Optional()])
    city = StringField(_l("City"), validators=[Optional()])
    language = SelectField(_l("Language"), validators=[Optional()])
    tier = SelectField(_l("Tier"), validators=[Optional()])

    _purchase_id: int | None = None

    def validate_order_ref(self, field) -> None:
        if not field.data:
            return
        customer_id = find_customer_id(self.customer.data or "")
        if customer_id is None:
            raise ValidationError(_("Give the customer too: an order is asked about one customer at a time."))
        self._purchase_id = purchase_for(customer_id, field.data)
        if self._purchase_id is None:
            raise ValidationError(_("This customer has no purchase with that order reference."))

    @property
    def purchase_id(self) -> int | None:
        """The purchase the invitation is about, found when the form was validated."""
        return self._purchase_id


def picked_ids(raw: str | None) -> list[int]:
    return [int(part) for part in (raw or "").split(",") if part.strip().isdigit()]


def segment_criteria(form: InviteForm) -> dict[str, str]:
    """The segment fields as segment_query reads them (stripped; empty for "any")."""
    return {
        "tag": (form.tag.data or "").strip(),
        "city": (form.city.data or "").strip(),
        "language": form.language.data or "",
        "tier": form.tier.data or "",
    }


def segment_description(criteria: dict[str, str]) -> str:
    """Who a segment is, in words: "all customers", or "all customers who … and …"."""
    parts = []
    if criteria["tag"]:
        parts.append(_("have the tag “%(tag)s”", tag=criteria["tag"]))
    if criteria["city"]:
        parts.append(_("live in %(city)s", city=criteria["city"]))
    if criteria["language"]:
        language = CUSTOMER_LANGUAGES.get(criteria["language"], criteria["language"])
        parts.append(_("prefer %(language)s", language=language))
    if criteria["tier"]:
        names = {tier.code: str(tier) for tier in tiers()}
        parts.append(_("are in the %(tier)s tier", tier=names.get(criteria["tier"], criteria["tier"])))
    if not parts:
        return _("all customers")
    return _("all customers who %(criteria)s", criteria=format_list(parts, locale=get_locale()))


class SurveyInviteView(StaffView):
    """Create invitations for one customer, a selection from the list, or a segment."""

    right = "survey.invite"

    def _form(self) -> InviteForm:
        form = InviteForm(request.form if request.method == "POST" else None)
        form.survey.choices = survey_choices()
        form.language.choices = [("", _("Any"))] + list(CUSTOMER_LANGUAGES.items())
        form.tier.choices = [("", _("Any"))] + [(t.code, str(t)) for t in tiers()]
        if request.method == "GET":
            form.survey.data = request.args.get("survey_id", form.survey.data)
            form.ids.data = request.args.get("ids", "")
            form.customer.data = request.args.get("customer", "")
        return form

    def _targets(self, form: InviteForm) -> list[int]:
        if form.customer.data:
            customer_id = find_customer_id(form.customer.data)  # known: the form checked it
            return [] if customer_id is None else [customer_id]
        if form.ids.data:
            return picked_ids(form.ids.data)
        segment = segment_query(form.tag.data, form.city.data, form.language.data, form.tier.data)
        return list(db.session.scalars(segment))

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = self._form()
        if not form.survey.choices:
            flash(_("Create a survey first, or reopen a closed one."), "warning")
        status = 200
        if request.method == "POST" and form.validate_on_submit():
            confirm = self._unconfirmed_segment(form)
            if confirm is not None:
                return self.render("admin/survey_invite.html", form=form, selected=0, confirm=confirm)
            targets = self._targets(form)  # read before the write lock is taken
            try:
                # The links page reads the new invitations: keep them loaded after the commit.
                with self.unit_of_work(keep_state=True):
                    survey = db.session.get(Survey, int(form.survey.data))
                    if survey is None:  # deleted since the form was shown
                        abort(404)
                    created = invite_customers(
                        survey, targets, form.days_valid.data, purchase_id=form.purchase_id
                    )
            except SurveyError as exc:
                flash(str(exc), "error")
            except WriteBusy:
                flash_busy()
                status = 503
            else:
                return self._links_page(survey, created)
        selected = len(picked_ids(form.ids.data))
        return self.render("admin/survey_invite.html", form=form, selected=selected, confirm=None), status

    def _unconfirmed_segment(self, form: InviteForm) -> dict | None:
        """A segment not confirmed at its current size: what to show before inviting it; else None.

        Nothing is asked for one customer or a selection from the list, nor for a segment that
        cannot be invited anyway (empty or too large: invite_customers says why).
        """
        if form.customer.data or form.ids.data:
            return None
        criteria = segment_criteria(form)
        size = segment_size(**criteria)
        if size == 0 or size > MAX_INVITATIONS:
            return None
        asked = {"survey": form.survey.data, "days": form.days_valid.data, "staff": current_user.id}
        selection = asked | criteria
        if selection_confirmed(request.form.get("confirm_token"), selection, size):
            return None
        return {"size": size, "who": segment_description(criteria), "token": selection_token(selection, size)}

    def _links_page(self, survey: Survey, created):
        member_nos = member_numbers(inv.customer_id for inv, _token in created)
        rows = [
            (
                member_nos.get(invitation.customer_id, ""),
                url_for("surveys.invitation", token=token, _external=True),
            )
            for invitation, token in created
        ]
        return self.render(
            "admin/survey_links.html",
            survey=survey,
            rows=rows,
            ids=",".join(str(inv.id) for inv, _token in created),
            sent_form=CheckedForm(),
        )

    @expose("/sent", methods=("POST",))
    def sent(self):
        if not CheckedForm().validate_on_submit():
            abort(400)
        mark_invitations_sent(picked_ids(request.form.get("ids")))
        return redirect(url_for("survey_invitations.index_view"))


# Results --------------------------------------------------------------------------------
class ResultsFilter(CheckedForm):
    class Meta:
        csrf = False  # a GET filter that changes nothing

    start = DateField(_l("From"), validators=[Optional()])
    end = DateField(_l("To"), validators=[Optional()])


def date_range(form: ResultsFilter) -> tuple[datetime | None, datetime | None]:
    """The filter's dates as UTC instants: from the start of `start` to the end of `end`, local time."""

    def instant(day, extra_days=0):
        if day is None:
            return None
        return from_local(datetime.combine(day + timedelta(days=extra_days), time()))

    return instant(form.start.data), instant(form.end.data, 1)


class SurveyResultsView(StaffView):
    """Per-survey results: response rate, NPS, CSAT, distributions, trend, text, agents."""

    right = "survey.view"
    endpoint_rights = {"export": "survey.export"}

    def _asked(self, survey_id: int) -> tuple[Survey, ResultsFilter, datetime | None, datetime | None]:
        """The survey (or 404), the date filter, and its range."""
        survey = db.session.get(Survey, survey_id)
        if survey is None:
            abort(404)
        form = ResultsFilter(request.args)
        form.validate()
        return survey, form, *date_range(form)

    @expose("/")
    def index(self):
        return self.render("admin/survey_overview.html", lines=survey_overview())

    @expose("/<int:survey_id>")
    def results(self, survey_id: int):
        survey, form, start, end = self._asked(survey_id)
        identity = can_view_pii()
        report = survey_report(survey, start, end, staff_zone(), with_identity=identity)
        html = self.render(
            "admin/survey_results.html",
            report=report,
            form=form,
            kind_labels=QUESTION_KIND_LABELS,
            status_labels=INVITATION_LABELS,
            nps_colours=NPS_COLOURS,
            may_export=current_user.can("survey.export"),
        )
        if identity and any(r.texts for r in report.questions):
            # Rendered first (a unit of work forgets what was loaded), shown only once audited.
            with self.unit_of_work() as uow:
                uow.audit("survey.results", "survey", survey_id, ["text", "member_no"])
        return html

    @expose("/<int:survey_id>/export")
    def export(self, survey_id: int):
        """Every response in the date range as CSV, one column per question, formula-safe."""
        survey, _form, start, end = self._asked(survey_id)
        identity = can_view_pii()
        query = responses_query(survey, start, end, with_customer=identity)
        total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
        identity_fields = ["member_no"] if identity else []
        fields = ["submitted_at", *identity_fields, *(f"q{q.id}" for q in survey.questions)]
        with self.unit_of_work() as uow:
            uow.audit("survey.export", "survey", survey_id, fields, detail=f"rows={total}")
        questions = list(survey.questions)
        header = [_("Response"), _("Submitted")] + ([_("Member no.")] if identity else [])
        header += [q.prompt for q in questions] + [_("Follow-up ticket")]
        zone = staff_zone()
        session = db.session()

        def rows():
            for response in session.scalars(query.execution_options(yield_per=500)):
                answers = {a.question_id: _answer_text(a) for a in response.answers}
                row = [response.id, response.submitted_at.astimezone(zone).isoformat(timespec="seconds")]
                if identity:
                    row.append(response.customer.member_no if response.customer else "")
                row += [answers.get(q.id, "") for q in questions]
                yield [*row, response.follow_up_ticket_id or ""]

        return stream_csv(f"survey-{survey.id}-responses.csv", header, rows(), session)


def _answer_text(answer: Answer) -> str:
    if answer.number is not None:
        return str(answer.number)
    if answer.choices:
        return "; ".join(json.loads(answer.choices))
    return answer.text or ""
