"""The survey answer page shared by invitation links and anonymous links."""

from __future__ import annotations

import secrets

from flask import g, render_template, request
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from wtforms import HiddenField
from wtforms.validators import Length, Optional, Regexp

from models.surveys.answers import AnswersInvalid, SurveySpec, check_answers, submit_response
from models.surveys.builder import SurveyError
from models.uow import Actor, WriteBusy, unit_of_work
from surveys.forms import HoneypotForm


class AnswerForm(HoneypotForm):
    """CSRF and honeypot; the answers themselves are read per question from the request."""

    submission_key = HiddenField(validators=[Optional(), Length(max=64), Regexp(r"^[A-Za-z0-9_-]*$")])


NPS_ENDS = (_l("Not at all likely"), _l("Extremely likely"))
RATING_LABELS = {
    1: _l("Very dissatisfied"),
    2: _l("Dissatisfied"),
    3: _l("Neutral"),
    4: _l("Satisfied"),
    5: _l("Very satisfied"),
}


def use_page_locale(locale: str | None) -> None:
    """Show the page in this language unless the visitor picked one."""
    g.page_locale = locale
    refresh()


def raw_answers(survey: SurveySpec) -> dict[int, object]:
    """The submitted value of each question: a list for multiple choice, else a string."""
    form = request.form
    return {
        q.id: form.getlist(f"q{q.id}") if q.kind == "multiple" else form.get(f"q{q.id}", "")
        for q in survey.questions
    }


def kept_answers(answers: dict[int, object]) -> dict[int, list[str]]:
    """The answers as lists of strings, to check the boxes again when the page comes back."""
    return {qid: value if isinstance(value, list) else [str(value)] for qid, value in answers.items()}


def render_gone(message: str):
    return render_template("surveys/survey_gone.html", message=message), 410


def answer_page(survey: SurveySpec, invitation_id: int | None = None):
    """Show the questions, or store the answers and thank the customer."""
    form = AnswerForm()
    answers: dict[int, object] = {}
    errors: dict[int, str] = {}
    status, busy = 200, False
    if form.validate_on_submit():
        if form.is_bot:
            return _thanks(survey)  # the bot sees what a person would; nothing is stored
        answers = raw_answers(survey)
        try:
            check_answers(survey, answers)  # before the write lock: a mistake costs no one a wait
            key = form.submission_key.data or None
            with unit_of_work(Actor.anonymous(request.remote_addr)):
                submit_response(survey, answers, invitation_id, submission_key=key)
        except AnswersInvalid as exc:
            errors, status = exc.errors, 422
        except SurveyError as exc:  # used, expired or closed meanwhile
            return render_gone(str(exc))
        except WriteBusy:
            # Nothing was stored: the answers again, and the same submission key, so that
            # sending again stores them once.
            status, busy = 503, True
        else:
            return _thanks(survey)
    elif form.is_submitted():
        status = 422
    if not form.submission_key.data:
        form.submission_key.data = secrets.token_urlsafe(24)
    html = render_template(
        "surveys/survey.html",
        survey=survey,
        form=form,
        answers=kept_answers(answers),
        errors=errors,
        busy=busy,
        nps_ends=NPS_ENDS,
        rating_labels=RATING_LABELS,
    )
    return html, status, {"Cache-Control": "no-store"}


def refused_page(survey: SurveySpec, wait: str) -> str:
    """The questions again with the answers as sent, when the rate limit refused them (nothing stored)."""
    form = AnswerForm()
    return render_template(
        "surveys/survey.html",
        survey=survey,
        form=form,
        answers=kept_answers(raw_answers(survey)),
        errors={},
        busy=False,
        limited=wait,
        nps_ends=NPS_ENDS,
        rating_labels=RATING_LABELS,
    )


def _thanks(survey: SurveySpec):
    return render_template("surveys/survey_thanks.html", survey=survey), 200, {"Cache-Control": "no-store"}
