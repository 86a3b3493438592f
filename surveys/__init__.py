"""Public pages for customers: feedback, complaint tracking and surveys. Never imports `admin`."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import format_timedelta, get_timezone
from flask_babel import gettext as _

from extensions import limiter, seconds_until_allowed
from models import utcnow
from models.contact import InvalidContact
from models.customer import customer_language
from models.surveys.answers import survey_spec
from models.surveys.invitations import InvitationGone, check_usable, find_invitation, mark_opened
from models.tickets.feedback import submit_feedback
from models.tickets.ticket import STATUS_LABELS, find_by_tracking_code
from models.tickets.tracking import EXAMPLE, format_tracking_code, tracking_lookup_key
from models.uow import Actor, WriteBusy, unit_of_work
from surveys.answers import answer_page, refused_page, render_gone, use_page_locale
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


# The look-up form and the tracking page count against one limit per address: a guess costs
# the same whichever way it is made.
_tracking_limit = limiter.shared_limit(_track_limit, scope="tracking")


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
@_tracking_limit
def track_lookup():
    form = TrackForm(request.args)
    if request.args and form.validate():
        code = form.code.data.strip()
        key = tracking_lookup_key(code)
        if key is not None and find_by_tracking_code(key) is not None:
            # To the code as issued, whatever the case, spacing or look-alikes typed.
            return redirect(url_for(".track", code=format_tracking_code(key)))
        return _not_found(form, code)
    return render_template("surveys/track_lookup.html", form=form, example=EXAMPLE)


def _not_found(form: TrackForm, code: str):
    """The look-up form again, with the code as typed and why it found nothing."""
    form.code.data = code
    if tracking_lookup_key(code) is None:
        reason = _(
            "A tracking code has 16 letters and digits in four groups, like %(example)s. "
            "Check what you typed and try again.",
            example=EXAMPLE,
        )
    else:
        reason = _("No message has this tracking code. Check it and try again.")
    form.code.errors = [reason]
    return render_template("surveys/track_lookup.html", form=form, example=EXAMPLE), 404


@bp.route("/track/<code>")
@_tracking_limit
def track(code: str):
    ticket = find_by_tracking_code(code)
    if ticket is None:
        return _not_found(TrackForm(formdata=None), code[:64])
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


# Refused by the rate limit --------------------------------------------------------------------


def _wait_text() -> tuple[str, int]:
    """How long until the limit lets this address in again, in words and in seconds."""
    seconds = seconds_until_allowed()
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5, add_direction=True), seconds


@bp.errorhandler(429)
def too_many(exc):
    """A refused form comes back with what was typed and when to try again; nothing was stored."""
    wait, seconds = _wait_text()
    headers = {"Retry-After": str(seconds), "Cache-Control": "no-store"}
    page = None
    if request.endpoint == "surveys.feedback" and request.method == "POST":
        page = render_template("surveys/feedback.html", form=FeedbackForm(), limited=wait)
    elif request.endpoint == "surveys.track_lookup":
        form = TrackForm(request.args)
        page = render_template("surveys/track_lookup.html", form=form, example=EXAMPLE, limited=wait)
    elif request.endpoint == "surveys.track":
        form = TrackForm(formdata=None, code=str((request.view_args or {}).get("code", ""))[:64])
        page = render_template("surveys/track_lookup.html", form=form, example=EXAMPLE, limited=wait)
    elif request.endpoint in ("surveys.invitation", "surveys.public_survey") and request.method == "POST":
        page = _refused_survey(wait)
    if page is None:
        page = render_template(
            "error.html", code=429, message=_("Too many attempts. Please wait a little and try again.")
        )
    return page, 429, headers


def _refused_survey(wait: str) -> str | None:
    """The survey's questions again, with the answers as given, or None if the link names none."""
    args = request.view_args or {}
    invitation = find_invitation(str(args["token"])) if "token" in args else None
    if invitation is not None:
        try:
            check_usable(invitation)  # a used or expired link gets its own page, not the form
        except InvitationGone:
            return None
        survey = survey_spec(invitation.survey_id)
        language = customer_language(invitation.customer_id)
    else:
        survey = None if "token" in args else survey_spec(slug=str(args.get("slug", "")))
        language = None
    if survey is None:
        return None
    use_page_locale(language or survey.language)
    return refused_page(survey, wait)
