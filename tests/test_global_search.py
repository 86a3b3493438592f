"""The search box in the top bar: one term finds a customer, a ticket or a coupon, grouped by
kind, masked by role, never carried in an address, and looked up by contact details only for
roles that may, audited and limited like the customer list's search."""

from __future__ import annotations

import html
import re
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa

from models import db
from models.loyalty.rewards import Redemption
from models.uow import SYSTEM, unit_of_work
from models.user import Role
from tests.factories import audit_events, make_customer, make_reward, make_ticket

PHONE = "13800138000"
COUPON = "ABCD-EFGH-JKLM-NPQR"
NAME_REFUSED = (
    "Searching by name needs the right to see personal data, so nothing was looked up. "
    "Search by member number, city or tag instead."
)
CONTACT_REFUSED = (
    "Searching by email or phone number needs the right to see personal data, so nothing was "
    "looked up. Search by member number, city or tag instead."
)
NAME_NOT_FOUND = (
    "No customer has this name. Names are matched exactly (whole name as recorded; case and "
    "spacing do not matter), because names are stored encrypted: a part of a name, a nickname "
    "or another spelling finds nothing. Try the customer's phone number, email address or "
    "member number."
)
EVERY_KIND = (
    "a member number, an exact email address, a phone number in any format, an exact full name, "
    "a ticket number, a tracking code or a coupon code"
)
IDENTIFIERS_ONLY = "a member number, a ticket number, a tracking code or a coupon code"


def make_coupon(customer_id: int, code: str = COUPON) -> Redemption:
    reward = make_reward()
    with unit_of_work(SYSTEM) as uow:
        redemption = uow.add(
            Redemption(customer_id=customer_id, reward_id=reward.id, points=100, coupon_code=code)
        )
    return redemption


def search(client, term: str, token: str | None = None):
    """Type a term into the top bar's box of the home page and send it; the answer to the POST."""
    if token is None:
        home = client.get("/admin/")
        assert 'id="global-search"' in home.text
        box = re.search(r'id="global-search".*?name="search_token" value="([^"]+)"', home.text, re.S)
        token = box.group(1)
    return client.post("/admin/search/", data={"term": term, "search_token": token})


def groups(page: str) -> dict[str, tuple[int, list[str]]]:
    """Each kind on a results page: its count and the titles of its hits."""
    found = {}
    for kind, section in re.findall(
        r'<section class="mb-4" data-kind="(\w+)".*?>(.*?)</section>', page, re.S
    ):
        count = int(re.search(r"<span[^>]*data-count>(\d+)</span>", section).group(1))
        found[kind] = (count, [html.unescape(t) for t in re.findall(r"data-hit>([^<]*)</a>", section)])
    return found


def details(page: str) -> list[str]:
    return [
        html.unescape(d).strip() for d in re.findall(r'<span class="text-muted ml-2">([^<]*)</span>', page)
    ]


def notices(page: str) -> list[str]:
    return [html.unescape(n).strip() for n in re.findall(r"<div[^>]*data-notice>(.*?)</div>", page, re.S)]


def addresses(page: str) -> list[str]:
    return [html.unescape(a) for a in re.findall(r'(?:href|action|src)="([^"]*)"', page)]


def assert_nowhere_in_addresses(term: str, *urls: str | None) -> None:
    for url in urls:
        for spelling in {term, quote(term, safe=""), quote_plus(term), term.lower()}:
            assert spelling not in (url or ""), (term, url)


def test_a_member_number_goes_straight_to_the_customer(client, auth):
    customer = make_customer(name="王芳")
    auth.login(Role.AGENT)
    answer = search(client, customer.member_no.lower())
    assert (answer.status_code, answer.location) == (303, f"/admin/customers/details/?id={customer.id}")


@pytest.mark.parametrize("spelling", [str.upper, str.lower, lambda ref: ref.replace("-", " ")])
def test_a_ticket_number_goes_straight_to_the_ticket(client, auth, spelling):
    ticket, _code = make_ticket()
    auth.login(Role.ANALYST)
    answer = search(client, spelling(str(ticket)))
    assert (answer.status_code, answer.location) == (303, f"/admin/tickets/ticket/{ticket.id}")


def test_a_tracking_code_goes_straight_to_its_ticket(client, auth):
    make_ticket()
    ticket, code = make_ticket()
    auth.login(Role.AGENT)
    answer = search(client, code.lower().replace("-", " "))
    assert (answer.status_code, answer.location) == (303, f"/admin/tickets/ticket/{ticket.id}")


@pytest.mark.parametrize(
    ("role", "location"),
    [
        (Role.AGENT, "/admin/customers/coupon/{coupon}"),
        (Role.ANALYST, "/admin/customers/details/?id={customer}"),
    ],
)
def test_a_coupon_code_goes_to_the_coupon_or_for_an_analyst_to_its_customer(client, auth, role, location):
    customer = make_customer()
    coupon = make_coupon(customer.id)
    auth.login(role)
    answer = search(client, "abcdefghjklmnpqr")
    assert (answer.status_code, answer.location) == (
        303,
        location.format(coupon=coupon.id, customer=customer.id),
    )


def test_results_are_grouped_by_kind_with_their_counts(client, auth):
    ticket, _code = make_ticket()
    customer = make_customer(name="王芳", member_no=str(ticket), city="杭州")
    auth.login(Role.AGENT)
    answer = search(client, str(ticket))
    assert answer.status_code == 200
    assert groups(answer.text) == {"customer": (1, [customer.member_no]), "ticket": (1, [str(ticket)])}
    assert details(answer.text) == ["王芳 · 杭州", "Parcel late · New"]
    assert "2 matches for “" in answer.text
    # Identifiers matched: the term was not also looked up as a name, email or phone.
    assert audit_events("customer.search") == audit_events("customer.search_refused") == []


def test_a_name_lists_every_customer_who_has_it(client, auth):
    first = make_customer(name="王芳", city="杭州")
    second = make_customer(name="王 芳", city="上海")
    make_customer(name="王芳芳")
    auth.login(Role.MANAGER)
    answer = search(client, "王芳")
    assert groups(answer.text) == {"customer": (2, [first.member_no, second.member_no])}
    assert [a for a in addresses(answer.text) if "/details/" in a] == [
        f"/admin/customers/details/?id={first.id}",
        f"/admin/customers/details/?id={second.id}",
    ]
    assert [e.detail for e in audit_events("customer.search")] == ["key=name results=2"]
    shown = audit_events("customer.list")
    assert [(e.fields, e.detail) for e in shown] == [("name", f"ids={first.id},{second.id}")]


def test_an_analyst_sees_names_masked(client, auth):
    ticket, _code = make_ticket()
    make_customer(name="王芳", member_no=str(ticket), city="杭州")
    auth.login(Role.ANALYST)
    answer = search(client, str(ticket))
    assert details(answer.text) == ["王* · 杭州", "Parcel late · New"]
    assert "王芳" not in answer.text
    assert audit_events("customer.list") == []


@pytest.mark.parametrize(
    ("role", "status", "where"),
    [
        (Role.ADMIN, 303, "customer"),
        (Role.MANAGER, 303, "customer"),
        (Role.AGENT, 303, "customer"),
        (Role.ANALYST, 200, None),
    ],
)
def test_who_finds_a_customer_by_phone_number(client, auth, role, status, where):
    customer = make_customer(name="王芳", phone=PHONE)
    auth.login(role)
    answer = search(client, "138 0013 8000")
    assert answer.status_code == status
    if where:
        assert answer.location == f"/admin/customers/details/?id={customer.id}"
        assert [e.detail for e in audit_events("customer.search")] == ["key=phone results=1"]
    else:
        assert (groups(answer.text), notices(answer.text)) == ({}, [CONTACT_REFUSED])
        assert [e.detail for e in audit_events("customer.search_refused")] == ["key=phone reason=no right"]
        assert f"It was looked up as {IDENTIFIERS_ONLY}." in answer.text


@pytest.mark.parametrize(
    ("term", "kind", "notice"),
    [("王芳", "name", NAME_REFUSED), ("wang.fang@example.com", "email", CONTACT_REFUSED)],
)
def test_an_analyst_cannot_look_up_by_name_or_email_and_is_told_why(client, auth, term, kind, notice):
    make_customer(name="王芳", email="wang.fang@example.com")
    auth.login(Role.ANALYST)
    answer = search(client, term)
    assert (answer.status_code, groups(answer.text), notices(answer.text)) == (200, {}, [notice])
    refused = audit_events("customer.search_refused")
    assert [(e.actor, e.detail) for e in refused] == [("analyst@test.example", f"key={kind} reason=no right")]
    assert audit_events("customer.search") == []


def test_nothing_found_says_what_was_searched_and_what_to_try(client, auth):
    auth.login(Role.AGENT)
    answer = search(client, "Nobody Atall")
    page = answer.text
    assert (answer.status_code, groups(page), notices(page)) == (200, {}, [NAME_NOT_FOUND])
    assert "Nothing found for “Nobody Atall”." in page
    assert f"It was looked up as {EVERY_KIND}." in page
    assert {"/admin/customers/", "/admin/tickets/"} <= set(addresses(page))


@pytest.mark.parametrize("role", [Role.AGENT, Role.ANALYST])
def test_the_term_is_in_no_address_and_no_audit_row(client, auth, role):
    ticket, code = make_ticket()
    customer = make_customer(
        name="Zhang Wei", email="zhang.wei@example.com", phone=PHONE, member_no=str(ticket)
    )
    make_coupon(customer.id)
    auth.login(role)
    for term in ["Zhang Wei", "zhang.wei@example.com", PHONE, str(ticket), code, COUPON, "Not Anyone"]:
        answer = search(client, term)
        assert answer.status_code in (200, 303)
        assert_nowhere_in_addresses(term, answer.location, *addresses(answer.text))
    rows = [" ".join(str(v) for v in row) for row in db.session.execute(sa.text("SELECT * FROM audit_event"))]
    for term in ["zhang", "13800138000", "example.com", COUPON, code]:
        assert not [row for row in rows if term.lower() in row.lower()], term


def test_a_search_without_its_csrf_token_is_refused_and_looks_nothing_up(client, auth):
    make_customer(name="王芳", phone=PHONE)
    auth.login(Role.AGENT)
    assert client.post("/admin/search/", data={"term": PHONE}).status_code == 400
    assert search(client, PHONE, token="forged").status_code == 400
    assert audit_events("customer.search") == []


@pytest.mark.parametrize("app_config", [{"CONTACT_SEARCH_RATE_LIMIT": "1 per hour"}])
def test_the_top_bar_shares_the_contact_search_limit(client, auth):
    make_customer(name="王芳", phone=PHONE)
    auth.login(Role.AGENT)
    assert search(client, PHONE).status_code == 303
    answer = search(client, "王芳")
    assert answer.status_code == 200 and groups(answer.text) == {}
    (notice,) = notices(answer.text)
    assert notice.startswith("You have reached the limit of 1 searches by email, phone number or name.")
    assert [e.detail for e in audit_events("customer.search_refused")] == ["key=name reason=rate limit"]


def test_the_box_is_in_the_top_bar_of_every_staff_page(client, auth):
    auth.login(Role.ANALYST)
    for path in ["/admin/", "/admin/customers/", "/admin/tickets/", "/admin/redemptions/", "/admin/account/"]:
        page = client.get(path).text
        assert page.count('action="/admin/search/"') == 1, path


def test_the_search_page_without_a_term_shows_the_box_and_what_it_finds(client, auth):
    auth.login(Role.AGENT)
    page = client.get("/admin/search/")
    assert page.status_code == 200
    assert f"Looks the text up as {EVERY_KIND}." in page.text
    assert groups(page.text) == {} and "Nothing found" not in page.text


def test_a_term_too_long_is_refused_and_kept(client, auth):
    auth.login(Role.AGENT)
    long_term = "x" * 255
    page = search(client, long_term)
    assert page.status_code == 200
    assert "Field cannot be longer than 254 characters." in page.text
    assert f'value="{long_term}"' in page.text
    assert audit_events("customer.search") == []
