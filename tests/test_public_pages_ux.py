"""Public pages: a wrong code keeps the visitor on the look-up form, a refused form keeps its text,
and error pages lead customers to the public entry points, never to the staff sign-in."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import db
from models.surveys.answers import SurveyResponse
from models.tickets.ticket import Ticket
from tests.conftest import csrf_token
from tests.test_feedback import code_from, send_feedback
from tests.test_survey_pages import answers, invite, submit, survey  # noqa: F401 (a fixture)

TINY_LIMITS = {
    "PUBLIC_FORM_RATE_LIMIT": "1 per hour",
    "SURVEY_RATE_LIMIT": "1 per hour",
    "TRACKING_RATE_LIMIT": "2 per hour",
}


def tickets() -> int:
    return db.session.scalar(sa.select(sa.func.count(Ticket.id)))


def links(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', html)


# A wrong code ---------------------------------------------------------------------------------


def test_a_wrong_code_on_the_tracking_page_shows_the_lookup_form_with_it_and_why(client):
    code = code_from(client, send_feedback(client))
    wrong = ("1" if code[0] != "1" else "2") + code[1:]
    response = client.get(f"/track/{wrong}")
    assert response.status_code == 404
    assert '<input aria-describedby="code-hint code-error" aria-invalid="true"' in response.text
    assert f'value="{wrong}"' in response.text
    assert "No message has this tracking code. Check it and try again." in response.text
    assert "/login" not in response.text


def test_a_code_of_the_wrong_shape_is_told_what_a_code_looks_like(client):
    response = client.get("/track", query_string={"code": "12345"})
    assert response.status_code == 404
    assert 'value="12345"' in response.text
    assert (
        "A tracking code has 16 letters and digits in four groups, like K7QM-4XN2-PD9R-W3HF." in response.text
    )


def test_the_lookup_form_leads_to_the_code_as_issued_whatever_was_typed(client):
    code = code_from(client, send_feedback(client))
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    response = client.get("/track", query_string={"code": typed})
    assert response.status_code == 302 and response.location.endswith(f"/track/{code}")


# Error pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/nowhere", "/s/no-such-invitation", "/p/no-such-survey"])
def test_a_public_error_page_links_to_tracking_and_feedback_not_to_the_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert links(response.text) == ["?lang=en", "?lang=zh_Hans_CN", "/track", "/feedback"]
    assert "This page does not exist." in response.text


def test_a_staff_error_page_keeps_its_link_to_the_panel(client, auth):
    auth.login("agent")
    response = client.get("/admin/no-such-page/")
    assert response.status_code == 404
    assert links(response.text) == ["/"]


# Refused by the rate limit: the form again, with what was typed, nothing stored -----------------


@pytest.mark.parametrize("app_config", [TINY_LIMITS])
def test_a_refused_feedback_form_comes_back_with_the_text_and_when_to_retry(client):
    assert send_feedback(client).status_code == 302
    response = send_feedback(client, message="第二条：包裹还是没到。", name="王芳", email="wang@example.com")
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert "第二条：包裹还是没到。</textarea>" in response.text
    assert 'value="王芳"' in response.text and 'value="wang@example.com"' in response.text
    assert "Too many attempts from your connection." in response.text
    assert re.search(r"please send it again in (\d+ minutes|1 hour)\.", response.text)
    assert tickets() == 1


@pytest.mark.parametrize("app_config", [TINY_LIMITS])
def test_a_refused_tracking_lookup_keeps_the_code(client):
    code = code_from(client, send_feedback(client))
    assert [client.get("/track", query_string={"code": code}).status_code for _ in range(2)] == [302, 302]
    response = client.get("/track", query_string={"code": code})
    assert response.status_code == 429
    assert f'value="{code}"' in response.text and "Too many look-ups from your connection." in response.text
    # The page and the form share one limit: the page is refused too, and keeps the code in the form.
    page = client.get(f"/track/{code}")
    assert page.status_code == 429 and f'value="{code}"' in page.text


@pytest.mark.parametrize("app_config", [TINY_LIMITS])
def test_a_refused_survey_keeps_the_answers_and_stores_nothing(client, survey):  # noqa: F811
    url = f"/p/{survey.public_slug}"
    assert submit(client, url, answers(survey)).status_code == 200
    page = client.get(url)
    key = csrf_token(page.text, "submission_key")
    response = submit(client, url, answers(survey, nps="3", rating="2", text="太慢了"), page)
    assert response.status_code == 429
    assert "太慢了</textarea>" in response.text
    checked = re.findall(r'value="([^"]+)"[^>]*checked', response.text)
    assert checked == ["3", "2", "速度"]
    assert csrf_token(response.text, "submission_key") == key  # sent again, it is stored once
    assert db.session.scalar(sa.select(sa.func.count(SurveyResponse.id))) == 1


@pytest.mark.parametrize("app_config", [TINY_LIMITS])
def test_a_refused_personal_survey_link_keeps_the_answers(client, survey):  # noqa: F811
    tokens = [invite(survey)[1] for _ in range(2)]
    assert submit(client, f"/s/{tokens[0]}", answers(survey)).status_code == 200  # this address's one answer
    response = submit(client, f"/s/{tokens[1]}", answers(survey, text="第二次"))
    assert response.status_code == 429 and "第二次</textarea>" in response.text
    assert db.session.scalar(sa.select(sa.func.count(SurveyResponse.id))) == 1
