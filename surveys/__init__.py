"""Public pages for customers: feedback, complaint tracking and surveys. Never imports `admin`."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import get_timezone
from flask_babel import gettext as _

from extensions import limiter
from models import utcnow
from models.contact import InvalidContact
from models.customer import customer_language
from models.surveys.answers import survey_spec
from models.surveys.invitations import InvitationGone, check_usable, find_invitation, mark_opened
from models.tickets.feedback import submit_feedback
from models.tickets.ticket import STATUS_LABELS, find_by_tracking_code
from models.uow import Actor, WriteBusy, unit_of_work
from surveys.answers import answer_page, render_gone, use_page_locale
from surveys.forms import FeedbackForm, TrackForm

bp = Blueprint("surveys", __name__)


@bp.before_request
def _no_nul() -> None:
    """PostgreSQL can neither store nor compare text holding NUL, and no one types one."""
    if any("\x00" in str(value) for value in (request.view_args or {}).values()):
        abort(404)  # such an address names nothing
    for values in (request.args, request.form):
        if any("\x00" in str(name) or "\x00" in str(value) for name, value in values.items(multi=True)):
            abort(400, description="The request holds a NUL character.")


def _form_limit() -> str:
    return current_app.config["PUBLIC_FORM_RATE_LIMIT"]


def _track_limit() -> str:
    return current_app.config["TRACKING_RATE_LIMIT"]


def _survey_limit() -> str:
    return current_app.config["SURVEY_RATE_LIMIT"]


@bp.route("/feedback", methods=["GET", "POST"])
@limiter.limit(_form_limit, methods=["POST"])
def feedback():
    form = FeedbackForm()
    if form.validate_on_submit():
        if form.is_bot:
            # Dropped without a ticket; the bot sees the same page a person would.
            return redirect(url_for(".feedback_sent"))
        try:
            with unit_of_work(Actor.anonymous(request.remote_addr)):
                ticket, code = submit_feedback(
                    form.kind.data, form.message.data, form.name.data, form.email.data, form.phone.data
                )
                reference = ticket.reference
        except InvalidContact as exc:
            form.email.errors.append(str(exc))
        except WriteBusy:
            # Nothing was stored: the form again, with everything the customer typed.
            return render_template("surveys/feedback.html", form=form, busy=True), 503, {"Retry-After": "1"}
        else:
            session["tracking_code"] = code
            session["tracking_reference"] = reference
            return redirect(url_for(".feedback_sent"))
    return render_template("surveys/feedback.html", form=form)


@bp.route("/feedback/sent")
def feedback_sent():
    code = session.pop("tracking_code", None)
    reference = session.pop("tracking_reference", None)
    return render_template("surveys/feedback_sent.html", code=code, reference=reference)


@bp.route("/track", methods=["GET"])
@limiter.limit(_track_limit)
def track_lookup():
    form = TrackForm(request.args)
    if request.args and form.validate():
        code = form.code.data.strip()
        if find_by_tracking_code(code) is not None:
            return redirect(url_for(".track", code=code))
        form.code.errors.append(_("No message has this tracking code. Check it and try again."))
    return render_template("surveys/track_lookup.html", form=form)


@bp.route("/track/<code>")
@limiter.limit(_track_limit)
def track(code: str):
    ticket = find_by_tracking_code(code)
    if ticket is None:
        abort(404)
    messages = [m for m in ticket.messages if m.is_public]
    return render_template(
        "surveys/track.html",
        ticket=ticket,
        status_label=STATUS_LABELS[ticket.status],
        messages=messages,
        zone=str(get_timezone()),
    )


@bp.route("/s/<token>", methods=["GET", "POST"])
@limiter.limit(_track_limit, methods=["GET"])
@limiter.limit(_survey_limit, methods=["POST"])
def invitation(token: str):
    """A personal, single-use survey link."""
    invitation = find_invitation(token)
    if invitation is None:
        abort(404)
    survey = survey_spec(invitation.survey_id)
    if survey is None:
        abort(404)
    use_page_locale(customer_language(invitation.customer_id) or survey.language)
    invitation_id = invitation.id  # read now: a unit of work forgets what was loaded before it
    if request.method == "GET":
        try:
            check_usable(invitation)
        except InvitationGone as exc:
            return render_gone(str(exc))
        if invitation.unopened:  # only the first opening writes; a reload takes no write lock
            _mark_opened(invitation_id)
    return answer_page(survey, invitation_id)


def _mark_opened(invitation_id: int) -> None:
    try:
        with unit_of_work(Actor.anonymous(request.remote_addr)):
            mark_opened(invitation_id)
    except WriteBusy:
        pass  # bookkeeping only: the customer still gets the questions, and answering marks the link


@bp.route("/p/<slug>", methods=["GET", "POST"])
@limiter.limit(_survey_limit, methods=["POST"])
def public_survey(slug: str):
    """A survey's anonymous link, open to anyone while the survey allows it."""
    survey = survey_spec(slug=slug)
    if survey is None or not survey.public_link:
        abort(404)
    use_page_locale(survey.language)
    if not survey.is_open(utcnow()):
        return render_gone(_("This survey is not taking answers at the moment."))
    return answer_page(survey)
