"""Inviting a segment shows how many customers it holds and creates nothing until confirmed."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from models import db
from models.surveys.invitations import Invitation
from models.user import Role
from tests.conftest import csrf_token
from tests.factories import make_customer
from tests.test_surveys_admin import make_survey


def invitations() -> int:
    return db.session.scalar(sa.select(sa.func.count(Invitation.id)))


def send(client, survey, **fields):
    """The invitation form as first sent (no confirmation)."""
    page = client.get("/admin/survey_invite/")
    data = {"csrf_token": csrf_token(page.text), "survey": str(survey.id), "days_valid": "7"}
    return client.post("/admin/survey_invite/", data=data | fields), data


def question(response) -> str | None:
    found = re.search(r'id="invite-confirm"[^>]*>\s*<p[^>]*><strong>(.*?)</strong>', response.text, re.S)
    return html.unescape(found.group(1)) if found else None


def token(response) -> str:
    return csrf_token(response.text, "confirm_token")


def test_an_empty_segment_asks_to_confirm_every_customer_before_inviting(client, auth):
    survey = make_survey()
    for _ in range(3):
        make_customer()
    auth.login(Role.AGENT)
    response, data = send(client, survey)
    assert response.status_code == 200
    assert question(response) == "This will invite 3 customers (all customers)."
    assert "Invite 3 customers" in response.text
    assert invitations() == 0
    confirmed = client.post("/admin/survey_invite/", data=data | {"confirm_token": token(response)})
    assert len(set(re.findall(r"/s/[\w-]+", confirmed.text))) == 3
    assert invitations() == 3


def test_a_segment_is_described_by_its_criteria(client, auth):
    survey = make_survey()
    make_customer(tags="vip", city="杭州")
    make_customer(tags="vip", city="上海")
    auth.login(Role.AGENT)
    response, _data = send(client, survey, tag=" vip ", city="杭州")
    assert (
        question(response)
        == "This will invite 1 customer (all customers who have the tag “vip” and live in 杭州)."
    )
    assert invitations() == 0


def test_a_changed_selection_or_a_forged_token_must_be_confirmed_again(client, auth):
    survey = make_survey()
    make_customer(tags="vip")
    make_customer(tags="vip")
    make_customer(tags="new")
    auth.login(Role.AGENT)
    response, data = send(client, survey, tag="vip")
    assert question(response) == "This will invite 2 customers (all customers who have the tag “vip”)."
    shown = token(response)
    changed = client.post("/admin/survey_invite/", data=data | {"tag": "", "confirm_token": shown})
    assert question(changed) == "This will invite 3 customers (all customers)."
    longer = client.post(
        "/admin/survey_invite/", data=data | {"tag": "vip", "days_valid": "30", "confirm_token": shown}
    )
    assert question(longer) == "This will invite 2 customers (all customers who have the tag “vip”)."
    forged = client.post(
        "/admin/survey_invite/", data=data | {"tag": "vip", "confirm_token": shown[:-2] + "xx"}
    )
    assert question(forged) == "This will invite 2 customers (all customers who have the tag “vip”)."
    assert invitations() == 0


def test_a_segment_that_grew_after_it_was_counted_is_counted_again(client, auth):
    survey = make_survey()
    make_customer(tags="vip")
    auth.login(Role.AGENT)
    response, data = send(client, survey, tag="vip")
    make_customer(tags="vip")
    again = client.post("/admin/survey_invite/", data=data | {"tag": "vip", "confirm_token": token(response)})
    assert question(again) == "This will invite 2 customers (all customers who have the tag “vip”)."
    assert invitations() == 0


def test_one_customer_is_invited_without_a_count_step(client, auth):
    survey = make_survey()
    customer = make_customer()
    make_customer()
    auth.login(Role.AGENT)
    response, _data = send(client, survey, customer=customer.member_no)
    assert question(response) is None
    assert invitations() == 1
