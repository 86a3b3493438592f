"""Public pages for customers (feedback, complaint tracking, later surveys). Never imports `admin`."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import get_timezone

import models.survey  # noqa: F401  (the survey pages come next; the tables are registered now)
from extensions import limiter
from models import db
from models.contact import InvalidContact
from models.feedback import submit_feedback
from models.ticket import STATUS_LABELS, find_by_tracking_code
from surveys.forms import FeedbackForm, TrackForm

bp = Blueprint("surveys", __name__)


def _form_limit() -> str:
    return current_app.config["PUBLIC_FORM_RATE_LIMIT"]


def _track_limit() -> str:
    return current_app.config["TRACKING_RATE_LIMIT"]


@bp.route("/feedback", methods=["GET", "POST"])
@limiter.limit(_form_limit, methods=["POST"])
def feedback():
    form = FeedbackForm()
    if form.validate_on_submit():
        if form.is_bot:
            # Dropped without a ticket; the bot sees the same page a person would.
            return redirect(url_for(".feedback_sent"))
        try:
            ticket, code = submit_feedback(
                form.kind.data, form.message.data, form.name.data, form.email.data, form.phone.data
            )
        except InvalidContact as exc:
            form.email.errors.append(str(exc))
        else:
            db.session.commit()
            session["tracking_code"] = code
            session["tracking_reference"] = ticket.reference
            return redirect(url_for(".feedback_sent"))
    return render_template("surveys/feedback.html", form=form)


@bp.route("/feedback/sent")
def feedback_sent():
    code = session.pop("tracking_code", None)
    reference = session.pop("tracking_reference", None)
    return render_template("surveys/feedback_sent.html", code=code, reference=reference)


@bp.route("/track", methods=["GET"])
def track_lookup():
    form = TrackForm(request.args)
    if request.args and form.validate():
        return redirect(url_for(".track", code=form.code.data.strip()))
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
