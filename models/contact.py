"""Normalising and masking contact data: one canonical form per email and phone number."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _


class InvalidContact(ValueError):
    """An email address or phone number that cannot be understood; the message says why."""


def normalise_email(raw: str) -> str:
    """The canonical form of an email address (checked for syntax, domain lower-cased)."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidContact(_("Not a valid email address: %(reason)s", reason=str(exc))) from None


def email_lookup_key(email: str) -> str:
    """What the blind index of an email is computed over: the canonical form, lower-cased."""
    return normalise_email(email).lower()


def normalise_phone(raw: str, region: str = "CN") -> str:
    """A phone number in E.164 (+8613812345678); national numbers read in the given region."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        raise InvalidContact(_("Not a phone number.")) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContact(_("Not a valid phone number for its region.")) from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A space typed between two Chinese characters is no part of the name: 张 三 is 张三.
_SPACE_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) (?=[\u3400-\u9fff\uf900-\ufaff])")


def normalise_name(raw: str) -> str:
    """The form a full name is indexed in: NFKC, case folded, one space between words.

    Full-width letters become plain ones (ＪＯＨＮ is john), runs of spaces become one, and a
    space between two Chinese characters goes (张 三 is 张三). Nothing else is changed: the
    name is matched whole, never by part.
    """
    folded = unicodedata.normalize("NFKC", raw).casefold()
    return _SPACE_BETWEEN_HAN.sub("", " ".join(folded.split()))


def mask_email(email: str | None) -> str:
    """z***@example.com: the first character and the domain survive, nothing else."""
    if not email:
        return ""
    local, _sep, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str | None) -> str:
    """****5678: at most the last four digits survive.

    No prefix and no length: a mask that kept the first three digits as well (138****5678) left
    10,000 candidates, and an exact search confirmed the one that was right.
    """
    if not phone:
        return ""
    try:
        digits = str(phonenumbers.parse(phone, None).national_number)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 8:
        return "****" + digits[-2:]  # a short number keeps less: four of six would be most of it
    return "****" + digits[-4:]


def mask_name(name: str | None) -> str:
    """张* / J*** (the first character survives)."""
    if not name:
        return ""
    return name[:1] + ("*" if ord(name[0]) > 0x2E80 else "***")


def mask_date(value: date | None) -> str:
    """****-**-** (nothing of a birthday survives masking)."""
    return "****-**-**" if value else ""


def mask_text(value: str | None) -> str:
    """*** for any free text that is set."""
    return "***" if value else ""
