"""No unmasking by search: who may look customers up by contact details, the audit and limit of
each look-up, search terms kept out of addresses, and masks that reveal nothing new."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from datetime import timedelta
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest

from models import db, utcnow
from models.contact import mask_email, mask_phone
from models.user import Role
from tests.conftest import csrf_token, make_staff
from tests.factories import audit_events, make_customer, make_ticket
from tests.test_customers_admin import search_customers, search_results

PHONE = "17612347667"  # the finding's number: shown to analysts as 176****7667 before
REFUSED = (
    "Searching by email or phone number needs the right to see personal data, so nothing was "
    "looked up. Search by member number, city or tag instead."
)
EXPIRED = "This search has expired. Please search again."
NOT_FROM_ADDRESS = "Searches are not read from the page address. Type your search in the search box."
EMPTY = 'id="empty-state"'


def rows(page: str) -> list[str]:
    """The member numbers of the rows a list page shows."""
    return re.findall(r'<td class="col-member_no">\s*(\S+?)\s*</td>', page)


def notice(page: str) -> str | None:
    found = re.search(
        r'<div class="alert alert-warning" role="status" id="search-notice">(.*?)</div>', page, re.S
    )
    return html.unescape(found.group(1)).strip() if found else None


def search_box_value(page: str) -> str:
    box = re.search(r'<form method="POST"[^>]*role="search".*?name="search" value="([^"]*)"', page, re.S)
    assert box is not None
    return html.unescape(box.group(1))


def addresses(page: str) -> list[str]:
    """Every address a page links to or sends a form to."""
    return [html.unescape(a) for a in re.findall(r'(?:href|action|src)="([^"]*)"', page)]


def spellings(term: str) -> set[str]:
    """A term as it could appear in an address: as typed, and URL-encoded both ways."""
    return {term, quote(term, safe=""), quote_plus(term), term.replace("@", "%40")}


def assert_not_in_addresses(term: str, *urls: str) -> None:
    for url in urls:
        for spelling in spellings(term):
            assert spelling not in url, (term, url)


def answer_to(client, candidate: str) -> str:
    """All a search for a candidate answers (status, redirect, page), with what differs on every
    request blanked: the term as typed, the search's token, form tokens and script nonces."""
    answer = search_customers(client, candidate)
    page = client.get(answer.location).text
    text = f"{answer.status_code} {answer.location} {page}"
    blanked = re.sub(r"v\d+:[\w-]+(?:=|%3D|%253D)*", "TOKEN", text)  # sealed, in the clear or URL-encoded
    blanked = re.sub(r'<input[^>]*name="[\w-]*token"[^>]*>', "<input TOKEN>", blanked)  # CSRF, sign-out
    blanked = re.sub(r'nonce="[^"]+"', 'nonce="NONCE"', blanked)
    return blanked.replace(html.escape(candidate), "TERM")


def confirmed(client, candidates: list[str], member_no: str) -> list[str]:
    """The candidates a brute force can single out: their answer shows the customer, or differs
    from the answer most candidates get."""
    answers = {candidate: answer_to(client, candidate) for candidate in candidates}
    usual = Counter(answers.values()).most_common(1)[0][0]
    return [c for c, page in answers.items() if member_no in rows(page) or page != usual]


# The brute force of the finding ----------------------------------------------------------------
def test_an_analyst_cannot_confirm_a_masked_phone_number_by_trying_candidates(client, auth):
    """Can an analyst, knowing the mask, find a customer's number by searching for candidates?"""
    customer = make_customer(name="王芳", phone=PHONE, email="wang.fang@example.com")
    make_customer(name="李娜", phone="13900139000")
    auth.login(Role.ANALYST)
    listing = client.get("/admin/customers/").text
    assert sorted(re.findall(r'<td class="col-phone">\s*(.*?)\s*</td>', listing)) == ["****7667", "****9000"]
    # What the old mask left to guess (176 + four digits + 7667), the real number among them.
    candidates = [f"176{middle:04d}7667" for middle in range(1200, 1300)]
    assert PHONE in candidates
    assert confirmed(client, candidates, customer.member_no) == []
    # Every answer is the same refusal, whatever the candidate: nothing to tell them apart.
    for candidate in (PHONE, candidates[0]):
        page = search_results(client, candidate)
        assert (rows(page), notice(page), EMPTY in page) == ([], REFUSED, True)
        assert search_box_value(page) == candidate
    refused = audit_events("customer.search_refused")
    assert len(refused) == len(candidates) + 2
    assert {(e.actor, e.fields, e.detail, e.object_id) for e in refused} == {
        ("analyst@test.example", "phone", "key=phone reason=no right", None)
    }
    assert audit_events("customer.search") == []


def test_an_analyst_cannot_confirm_a_guessed_email_address(client, auth):
    customer = make_customer(name="王芳", email="wang.fang@example.com")
    auth.login(Role.ANALYST)
    guesses = ["fang.wang@example.com", "wang.fang@example.com", "WANG.FANG@example.com", "wf@example.com"]
    assert confirmed(client, guesses, customer.member_no) == []
    page = search_results(client, "wang.fang@example.com")
    assert (rows(page), notice(page)) == ([], REFUSED)
    assert [e.detail for e in audit_events("customer.search_refused")] == ["key=email reason=no right"] * 5


def test_the_brute_force_does_confirm_the_number_for_a_role_that_may_search(client, auth):
    """The check above would see a leak: for an agent, who may look up, it finds the number."""
    customer = make_customer(name="王芳", phone=PHONE)
    auth.login(Role.AGENT)
    candidates = [f"176{middle:04d}7667" for middle in range(1230, 1240)]
    assert confirmed(client, candidates, customer.member_no) == [PHONE]


def test_an_analyst_cannot_search_by_contact_through_an_old_address_or_an_export(client, auth):
    customer = make_customer(name="王芳", phone=PHONE)
    make_customer(name="李娜", phone="13900139000")
    auth.login(Role.ANALYST)
    for url in (f"/admin/customers/?search={PHONE}", f"/admin/customers/export/csv/?search={PHONE}"):
        answer = client.get(url)
        assert (answer.status_code, answer.location) == (302, "/admin/customers/")
    # The export of a refused search holds no row.
    page = search_results(client, PHONE)
    (export_url,) = [a for a in addresses(page) if "/export/csv/" in a]
    body = client.get(export_url).text.lstrip("\ufeff")
    assert list(csv.DictReader(io.StringIO(body))) == []
    # The export of everything shows the number masked.
    body = client.get("/admin/customers/export/csv/").text.lstrip("\ufeff")
    phones = {row["Member no."]: row["Phone"] for row in csv.DictReader(io.StringIO(body))}
    assert phones[customer.member_no] == "****7667"
    assert audit_events("customer.search") == []


@pytest.mark.parametrize("path", ["/admin/tickets/new/", "/admin/purchases/new/", "/admin/survey_invite/"])
def test_the_other_forms_that_find_a_customer_by_contact_are_closed_to_analysts(client, auth, path):
    auth.login(Role.ANALYST)
    assert client.get(path).status_code == 403


# What analysts may search by ---------------------------------------------------------------------
@pytest.mark.parametrize("term", ["M0000000", "杭州", "vip"])
def test_an_analyst_searches_by_member_number_city_and_tag(client, auth, term):
    wanted = make_customer(name="张伟", city="杭州", tags="vip")
    make_customer(name="李娜", city="成都", tags="new")
    auth.login(Role.ANALYST)
    if term == "M0000000":
        term = wanted.member_no
    page = search_results(client, term)
    assert (rows(page), notice(page)) == ([wanted.member_no], None)
    assert audit_events("customer.search") == audit_events("customer.search_refused") == []


@pytest.mark.parametrize(
    "role, placeholder",
    [
        (Role.ANALYST, "Member no., city or tag"),
        (Role.AGENT, "Member no., email, phone, full name, city or tag"),
    ],
)
def test_the_search_box_says_what_it_searches(client, auth, role, placeholder):
    auth.login(role)
    page = client.get("/admin/customers/").text
    assert f'placeholder="{placeholder}"' in page


# Searches by contact details: audited, limited ---------------------------------------------------
@pytest.mark.parametrize(
    "role, term, kind, results",
    [
        (Role.AGENT, "Wang.Fang@Example.com", "email", 1),
        (Role.MANAGER, "+86 176 1234 7667", "phone", 1),
        (Role.ADMIN, "13700137000", "phone", 0),
    ],
)
def test_every_search_by_contact_is_audited_without_its_value(client, auth, role, term, kind, results):
    customer = make_customer(name="王芳", phone=PHONE, email="wang.fang@example.com")
    make_customer(name="李娜", phone="13900139000", email="li.na@example.com")
    auth.login(role)
    page = search_results(client, term)
    assert rows(page) == ([customer.member_no] if results else [])
    (event,) = audit_events("customer.search")
    staff = make_staff(role)
    assert (event.actor, event.actor_id, event.action, event.object_type, event.object_id) == (
        staff.email,
        staff.id,
        "customer.search",
        "customer",
        None,
    )
    assert (event.fields, event.detail) == (kind, f"key={kind} results={results}")
    assert event.at is not None and utcnow() - event.at < timedelta(minutes=5)


def test_a_search_by_plain_words_is_not_audited_as_a_contact_search(client, auth):
    make_customer(city="杭州")
    auth.login(Role.AGENT)
    search_results(client, "杭州")
    assert audit_events("customer.search") == audit_events("customer.search_refused") == []


def test_paging_sorting_and_exporting_a_search_do_not_search_again(client, auth):
    make_customer(name="王芳", email="wang.fang@example.com")
    auth.login(Role.MANAGER)
    page = search_results(client, "wang.fang@example.com")
    sort_links = [a for a in addresses(page) if "sort=" in a]
    assert sort_links
    assert len(rows(client.get(sort_links[0]).text)) == 1
    (export_url,) = [a for a in addresses(page) if "/export/csv/" in a]
    assert len(list(csv.DictReader(io.StringIO(client.get(export_url).text.lstrip("\ufeff"))))) == 1
    assert len(audit_events("customer.search")) == 1


@pytest.mark.parametrize("app_config", [{"CONTACT_SEARCH_RATE_LIMIT": "3 per hour"}])
def test_searches_by_contact_are_limited_per_member_of_staff(client, auth):
    customer = make_customer(name="王芳", phone=PHONE, city="杭州")
    auth.login(Role.AGENT)
    for _ in range(3):
        assert rows(search_results(client, PHONE)) == [customer.member_no]
    answer = search_customers(client, PHONE)
    assert (answer.status_code, answer.location) == (302, "/admin/customers/?page_size=20")
    page = client.get(answer.location).text
    message = re.search(r"You have reached the limit[^<]*", page)
    assert message is not None
    assert re.fullmatch(
        r"You have reached the limit of 3 searches by email, phone number or name\. Try again after "
        r"\d{4}-\d\d-\d\d \d\d:\d\d, or search by member number, city or tag\.",
        html.unescape(message.group(0)).strip(),
    )
    assert rows(page) == [customer.member_no]  # the whole list, not a search
    # Plain searches are not limited; another member of staff, at the same address, is not limited.
    assert rows(search_results(client, "杭州")) == [customer.member_no]
    assert [e.detail for e in audit_events("customer.search")] == ["key=phone results=1"] * 3
    (refused,) = audit_events("customer.search_refused")
    assert (refused.actor, refused.detail) == ("agent@test.example", "key=phone reason=rate limit")
    auth.logout()
    auth.login(Role.MANAGER)
    assert rows(search_results(client, PHONE)) == [customer.member_no]


# Terms never in an address ---------------------------------------------------------------------
@pytest.mark.parametrize("term", ["wang.fang@example.com", "+86 176 1234 7667", "杭州"])
def test_a_search_term_appears_in_no_address(client, auth, term):
    for i in range(25):
        make_customer(
            city="杭州", email="wang.fang@example.com" if i == 0 else f"c{i}@example.com", phone=None
        )
    make_customer(phone=PHONE, city="成都")
    auth.login(Role.MANAGER)
    answer = search_customers(client, term)
    assert answer.status_code == 302
    assert set(dict(split_query(answer.location))) == {"q", "page_size"}
    page = client.get(answer.location).text
    assert search_box_value(page) == term  # shown in the page, for the person who typed it
    assert_not_in_addresses(term, answer.location, *addresses(page))
    assert "search=" not in answer.location and not any("search=" in a for a in addresses(page))


def test_paging_sorting_and_filters_keep_the_search(client, auth):
    for _ in range(25):
        make_customer(city="杭州", tags="vip")
    for _ in range(3):
        make_customer(city="杭州", tags="new")
        make_customer(city="成都", tags="vip")
    auth.login(Role.AGENT)
    page = search_results(client, "杭州")
    assert len(rows(page)) == 20 and "List (28)" in page
    (second,) = {a for a in addresses(page) if "page=1" in a}
    assert len(rows(client.get(second).text)) == 8
    sort_by_city = next(a for a in addresses(page) if "sort=4" in a)
    assert "List (28)" in client.get(sort_by_city).text
    # A filter narrows the search; the filter form keeps the search by its token, never the term.
    token = dict(split_query(second))["q"]
    filtered = client.get("/admin/customers/", query_string={"q": token, **tag_filter(page, "new")})
    assert "List (3)" in filtered.text
    form = re.search(r'<form id="filter_form".*?</form>', page, re.S).group(0)
    assert f'<input type="hidden" name="q" value="{token}">' in form and "杭州" not in form


def split_query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def tag_filter(page: str, value: str) -> dict[str, str]:
    """The URL argument of the list's "Tags equals" filter, read from the page's filter data."""
    data = re.search(r'<div id="filter-groups-data"[^>]*>(.*?)</div>', page, re.S).group(1)
    (option,) = [o for o in json.loads(html.unescape(data))["Tags"] if o["operation"] == "equals"]
    return {f"flt0_{option['arg']}": value}


def test_an_address_with_a_search_in_it_is_not_searched(client, auth):
    make_customer(name="王芳", phone=PHONE)
    make_customer(name="李娜", phone="13900139000")
    auth.login(Role.AGENT)
    answer = client.get("/admin/customers/", query_string={"search": PHONE, "sort": "1"})
    assert (answer.status_code, answer.location) == (302, "/admin/customers/?sort=1")
    page = client.get(answer.location).text
    assert NOT_FROM_ADDRESS in page
    assert len(rows(page)) == 2
    assert audit_events("customer.search") == []


def test_a_search_address_opens_only_for_whoever_searched_and_only_for_a_while(client, auth):
    from admin.customers import seal_search

    customer = make_customer(name="王芳", phone=PHONE)
    make_customer(name="李娜", phone="13900139000")
    agent = make_staff(Role.AGENT)
    auth.login(Role.MANAGER)
    manager_search = search_customers(client, PHONE).location
    auth.logout()
    auth.login(Role.AGENT)
    stale = seal_search(PHONE, agent.id, utcnow() - timedelta(minutes=31))
    for url in (
        manager_search,  # another member of staff's search
        "/admin/customers/?q=" + quote(stale),  # sealed for this agent, 31 minutes ago
        "/admin/customers/?q=v1:bm90IGEgdG9rZW4=",  # forged
        "/admin/customers/?q=%ED%A0%80",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert (notice(page.text), len(rows(page.text)), search_box_value(page.text)) == (EXPIRED, 2, "")
    fresh = seal_search(PHONE, agent.id, utcnow() - timedelta(minutes=29))
    assert rows(client.get("/admin/customers/?q=" + quote(fresh)).text) == [customer.member_no]


def test_a_search_without_its_token_is_refused(client, auth):
    auth.login(Role.AGENT)
    client.get("/admin/customers/")
    answer = client.post("/admin/customers/search/", data={"search": PHONE})
    assert answer.status_code == 400
    assert audit_events("customer.search") == []


def test_a_malformed_email_says_why_and_keeps_what_was_typed(client, auth):
    make_customer(email="wang.fang@example.com")
    auth.login(Role.AGENT)
    page = search_results(client, "wang.fang@")
    assert notice(page) == "Not a valid email address: There must be something after the @-sign."
    assert (rows(page), search_box_value(page)) == ([], "wang.fang@")
    assert audit_events("customer.search") == []


def test_a_search_too_long_says_so(client, auth):
    auth.login(Role.AGENT)
    answer = search_customers(client, "x" * 255)
    assert (answer.status_code, answer.location) == (302, "/admin/customers/?page_size=20")
    assert "Field cannot be longer than 254 characters." in client.get(answer.location).text


def test_an_empty_search_shows_everything(client, auth):
    make_customer()
    make_customer()
    auth.login(Role.AGENT)
    answer = search_customers(client, "   ")
    assert (answer.status_code, answer.location) == (302, "/admin/customers/?page_size=20")


# Masks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phone, masked",
    [("+8617612347667", "****7667"), ("+12025550123", "****0123"), ("+85223456789", "****6789"), (None, "")],
)
def test_a_masked_phone_keeps_at_most_its_last_four_digits(phone, masked):
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    "email, masked",
    [("alice@example.com", "a***@example.com"), ("Zhang.Wei@example.com", "Z***@example.com"), (None, "")],
)
def test_a_masked_email_keeps_its_first_character_and_its_domain(email, masked):
    assert mask_email(email) == masked


def test_analysts_see_the_same_masks_on_the_list_the_customer_page_the_export_and_a_ticket(client, auth):
    customer = make_customer(name="王芳", phone=PHONE, email="wang.fang@example.com")
    ticket, _code = make_ticket(
        contact_name="王芳", contact_email="wang.fang@example.com", contact_phone=PHONE
    )
    auth.login(Role.ANALYST)
    pages = [
        client.get("/admin/customers/").text,
        client.get(f"/admin/customers/details/?id={customer.id}").text,
        client.get("/admin/customers/export/csv/").text,
        client.get(f"/admin/tickets/ticket/{ticket.id}").text,
    ]
    for page in pages:
        assert "****7667" in page and "w***@example.com" in page
        for secret in (PHONE, "+86" + PHONE, "176****", "1761234", "wang.fang"):
            assert secret not in page
    db.session.expire_all()


def test_the_search_form_needs_a_token_on_every_list_page(client, auth):
    """The list page's search form carries the CSRF token of the list's other forms."""
    auth.login(Role.AGENT)
    page = client.get("/admin/customers/").text
    form = re.search(r'<form method="POST"[^>]*role="search".*?</form>', page, re.S).group(0)
    assert csrf_token(form)


def purchase_for(client, customer_lookup: str):
    page = client.get("/admin/purchases/new/")
    data = {"customer_lookup": customer_lookup, "order_ref": "R-77", "amount": "10.00", "channel": "store"}
    return client.post("/admin/purchases/new/", data={"csrf_token": csrf_token(page.text)} | data)


def test_a_form_that_finds_its_customer_by_contact_audits_the_look_up_without_its_value(client, auth):
    make_customer(phone="13800138000", email="buyer@example.com")
    auth.login(Role.AGENT)
    assert purchase_for(client, "13800138000").status_code == 302
    refused = purchase_for(client, "nobody@example.com")
    assert (
        refused.status_code == 200 and "No customer has that email, phone or member number." in refused.text
    )
    events = [(e.action, e.fields, e.detail) for e in audit_events("customer.search")]
    assert events == [
        ("customer.search", "phone", "key=phone results=1"),
        ("customer.search", "email", "key=email results=0"),
    ]
    assert all("13800138000" not in (e.detail or "") for e in audit_events("customer.search"))


@pytest.mark.parametrize("app_config", [{"CONTACT_SEARCH_RATE_LIMIT": "1 per hour"}])
def test_a_form_look_up_by_contact_counts_against_the_search_limit(client, auth):
    make_customer(phone="13800138000")
    auth.login(Role.AGENT)
    assert purchase_for(client, "13800138000").status_code == 302
    again = purchase_for(client, "13800138000")
    assert again.status_code == 200 and "You have reached the limit of 1 searches" in again.text
