"""Public forms: CSRF-checked, with a honeypot field that people never see."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, RadioField, StringField, TelField, TextAreaField, ValidationError
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from models.contact import InvalidContact, normalise_email, normalise_phone
from models.customer import default_region
from security import CheckedForm


def strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _check(normalise, value: str) -> None:
    try:
        normalise(value)
    except InvalidContact as exc:
        raise ValidationError(str(exc)) from None


class HoneypotForm(CheckedForm):
    """A form with a field hidden from people; bots that fill it are dropped."""

    website = StringField(_l("Leave this field empty"), validators=[Optional()])

    @property
    def is_bot(self) -> bool:
        return bool(self.website.data)


class FeedbackForm(HoneypotForm):
    kind = RadioField(
        _l("What would you like to tell us?"),
        choices=[
            ("complaint", _l("A complaint")),
            ("suggestion", _l("A suggestion")),
            ("praise", _l("Praise")),
        ],
        default="complaint",
        validators=[InputRequired()],
    )
    message = TextAreaField(
        _l("Your message"),
        filters=[strip],
        validators=[DataRequired(_l("Please write your message.")), Length(max=5000)],
    )
    name = StringField(_l("Your name (optional)"), validators=[Optional(), Length(max=100)])
    email = EmailField(_l("Email (optional)"), validators=[Optional(), Length(max=254)])
    phone = TelField(_l("Phone (optional)"), validators=[Optional(), Length(max=40)])

    def validate_email(self, field) -> None:
        _check(normalise_email, field.data)

    def validate_phone(self, field) -> None:
        _check(lambda value: normalise_phone(value, default_region()), field.data)


class TrackForm(CheckedForm):
    class Meta:
        csrf = False  # a GET lookup that changes nothing

    code = StringField(_l("Tracking code"), validators=[InputRequired(), Length(max=64)])
