"""Tracking codes people can read over the phone, and the old 40-character codes still found."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import db
from models.crypto import blind_index
from models.tickets.ticket import NewTicket, Ticket, find_by_tracking_code, open_ticket
from models.tickets.tracking import ALPHABET, new_tracking_code, tracking_lookup_key
from models.uow import SYSTEM, unit_of_work

CROCKFORD = "[0-9A-HJKMNP-TV-Z]"
LEGACY_CODE = "3F9A1-0B2C4-D6E8F-01234-56789-ABCDE-F0123-4567A"


def legacy_key(code: str) -> str | None:
    """How lookup keys were computed before the short codes (the blind indexes stored hold these)."""
    key = "".join(ch for ch in code.upper() if ch.isalnum())
    return key if len(key) >= 20 else None


def new_web_ticket() -> tuple[Ticket, str]:
    with unit_of_work(SYSTEM):
        ticket, code = open_ticket(NewTicket(subject="Broken zip", channel="web", first_message="It broke."))
    return ticket, code


def legacy_ticket() -> Ticket:
    """A ticket whose code was issued before the short codes, stored as it was then."""
    ticket, _code = new_web_ticket()
    with unit_of_work(SYSTEM):
        row = db.session.get(Ticket, ticket.id)
        row.tracking_code = LEGACY_CODE
        row.tracking_bidx = blind_index("tracking", legacy_key(LEGACY_CODE))
    return ticket


def test_a_new_code_is_16_crockford_characters_in_four_groups_of_four():
    codes = [new_tracking_code() for _ in range(200)]
    assert all(re.fullmatch(rf"{CROCKFORD}{{4}}(-{CROCKFORD}{{4}}){{3}}", code) for code in codes)
    assert len(set(codes)) == 200
    assert ALPHABET == "0123456789ABCDEFGHJKMNPQRSTVWXYZ" and not set("ILOU") & set(ALPHABET)


def test_case_spaces_dashes_and_look_alikes_do_not_matter():
    key = tracking_lookup_key("K7QM-4XN2-PD9R-W3H0")
    assert key == "K7QM4XN2PD9RW3H0"
    assert tracking_lookup_key("k7qm 4xn2 pd9r w3ho") == key  # lower case, spaces, O for 0
    assert tracking_lookup_key("K7QM4XN2PD9RW3HO") == key
    assert tracking_lookup_key("1111-2222-3333-4444") == tracking_lookup_key("iIlL-2222-3333-4444")


def test_text_that_cannot_be_a_code_has_no_lookup_key():
    assert [
        tracking_lookup_key(text)
        for text in [
            "",
            "K7QM-4XN2-PD9R",  # too short
            "K7QM-4XN2-PD9R-W3HF-A",  # too long
            "K7QM-4XN2-PD9R-W3HU",  # U is no code character
            "K7QM-4XN2-PD9R-W3H中",
            "X" * 100,
        ]
    ] == [None] * 6


def test_an_old_code_keeps_the_lookup_key_it_was_stored_under():
    assert tracking_lookup_key(LEGACY_CODE) == legacy_key(LEGACY_CODE) == LEGACY_CODE.replace("-", "")
    assert tracking_lookup_key(LEGACY_CODE.lower().replace("-", " ")) == legacy_key(LEGACY_CODE)


def test_old_and_new_codes_both_find_their_ticket(app):
    new_ticket, new_code = new_web_ticket()
    old_ticket = legacy_ticket()
    assert find_by_tracking_code(new_code).id == new_ticket.id
    assert find_by_tracking_code(new_code.lower().replace("-", " ")).id == new_ticket.id
    assert find_by_tracking_code(LEGACY_CODE).id == old_ticket.id
    assert find_by_tracking_code(LEGACY_CODE.lower()).id == old_ticket.id
    assert db.session.scalar(sa.select(sa.func.count(Ticket.id))) == 2


def test_the_tracking_page_and_the_lookup_form_take_both_kinds_of_code(client):
    new_ticket, new_code = new_web_ticket()
    old_ticket = legacy_ticket()
    pages = [client.get(f"/track/{code}") for code in (new_code, LEGACY_CODE)]
    assert [
        (p.status_code, ticket.reference in p.text)
        for p, ticket in zip(pages, (new_ticket, old_ticket), strict=True)
    ] == [
        (200, True),
        (200, True),
    ]
    typed = new_code.lower().replace("-", " ").replace("0", "o")
    response = client.get("/track", query_string={"code": typed})
    assert response.status_code == 302
    assert client.get(response.location).status_code == 200
