"""The public survey pages: invitation and anonymous links, kept answers, 410 and 404, abuse guards."""

from __future__ import annotations

import io
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import db, utcnow
from models.events import DetractorAnswered, _handlers, handles, load_handlers
from models.surveys.answers import SurveyResponse
from models.surveys.builder import Question, Survey
from models.surveys.invitations import Invitation, create_invitation
from models.tickets.ticket import Ticket
from models.uow import SYSTEM, unit_of_work
from tests.conftest import csrf_token
from tests.factories import make_customer, write_lock_held_elsewhere


@pytest.fixture
def survey(app) -> Survey:
    survey = Survey(
        title="售后服务调查",
        intro="感谢您抽出时间。",
        thank_you="谢谢，我们会认真阅读。",
        language="zh_Hans_CN",
        public_link=True,
        public_slug="after-sales",
    )
    survey.questions = [
        Question(position=1, kind="nps", prompt="您向朋友推荐我们的可能性有多大？", required=True),
        Question(position=2, kind="rating", prompt="您对这次服务满意吗？", required=True),
        Question(
            position=3, kind="multiple", prompt="哪些方面做得好？", required=False, options="速度\n态度\n价格"
        ),
        Question(position=4, kind="text", prompt="还有什么想告诉我们的？", required=False),
    ]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def edit(survey: Survey, **fields) -> None:
    with unit_of_work(SYSTEM):
        for name, value in fields.items():
            setattr(survey, name, value)


def answers(survey: Survey, nps="9", rating="5", liked=("速度",), text="很好") -> dict:
    q = {question.kind: f"q{question.id}" for question in survey.questions}
    return {q["nps"]: nps, q["rating"]: rating, q["multiple"]: list(liked), q["text"]: text}


def submit(client, url: str, data: dict, page=None):
    page = page or client.get(url)
    form = {
        "csrf_token": csrf_token(page.text),
        "submission_key": csrf_token(page.text, "submission_key"),
    }
    return client.post(url, data=form | data)


def stored() -> list[SurveyResponse]:
    return list(db.session.scalars(sa.select(SurveyResponse).order_by(SurveyResponse.id)))


def invite(survey: Survey, customer=None, **kwargs) -> tuple[Invitation, str]:
    with unit_of_work(SYSTEM):
        invitation, token = create_invitation(survey, customer.id if customer else None, **kwargs)
    return invitation, token


@contextmanager
def statements_run():
    """The SQL statements this block sends to the database."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()[:3]).upper())  # e.g. "UPDATE SURVEY_INVITATION SET"

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def test_an_invitation_is_answered_once_in_the_customers_language(client, survey):
    customer = make_customer(language="en")
    invitation, token = invite(survey, customer)
    page = client.get(f"/s/{token}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'lang="en"' in page.text and "Send my answers" in page.text and "售后服务调查" in page.text
    assert db.session.get(Invitation, invitation.id).status == "opened"
    response = submit(client, f"/s/{token}", answers(survey), page)
    assert response.status_code == 200 and "谢谢，我们会认真阅读。" in response.text
    (saved,) = stored()
    assert saved.customer_id == customer.id and saved.invitation_id == invitation.id
    assert sorted(a.number for a in saved.answers if a.number is not None) == [5, 9]
    assert db.session.get(Invitation, invitation.id).status == "responded"
    again = client.get(f"/s/{token}")
    assert again.status_code == 410 and "has been used already" in again.text


def test_an_unknown_token_is_404_and_an_expired_one_410(client, survey):
    assert client.get("/s/not-a-real-token-at-all").status_code == 404
    assert client.post("/s/not-a-real-token-at-all", data={}).status_code == 404
    _invitation, token = invite(survey, days_valid=1, now=utcnow() - timedelta(days=2))
    gone = client.get(f"/s/{token}")
    assert gone.status_code == 410 and "过期" in gone.text  # the survey's language: no customer


def test_a_validation_error_keeps_the_answers_given(client, survey):
    page = client.get("/p/after-sales")
    response = submit(client, "/p/after-sales", answers(survey, rating="", text="送货太慢了"), page)
    assert response.status_code == 422
    html = response.text
    rating = next(q for q in survey.questions if q.kind == "rating")
    assert f'href="#q{rating.id}"' in html and 'role="alert"' in html
    assert "送货太慢了</textarea>" in html
    assert 'value="9" checked' in html and 'value="速度" checked' in html
    assert stored() == []


def test_the_same_form_sent_twice_is_stored_once(client, survey):
    page = client.get("/p/after-sales")
    first = submit(client, "/p/after-sales", answers(survey), page)
    second = submit(client, "/p/after-sales", answers(survey), page)
    assert first.status_code == second.status_code == 200
    assert len(stored()) == 1
    # A fresh page is a fresh response.
    assert submit(client, "/p/after-sales", answers(survey)).status_code == 200
    assert len(stored()) == 2


def test_the_anonymous_link_can_be_switched_off_or_closed(client, survey):
    edit(survey, public_link=False)
    assert client.get("/p/after-sales").status_code == 404
    edit(survey, public_link=True, closes_at=utcnow() - timedelta(hours=1))
    assert client.get("/p/after-sales").status_code == 410


def test_a_detractor_answer_opens_a_follow_up_ticket(client, survey):
    customer = make_customer()
    _invitation, token = invite(survey, customer)
    assert submit(client, f"/s/{token}", answers(survey, nps="3", rating="2")).status_code == 200
    (response,) = stored()
    ticket = db.session.get(Ticket, response.follow_up_ticket_id)
    assert ticket.priority == "high" and ticket.customer_id == customer.id
    assert "NPS 3" in ticket.subject and "CSAT 2" in ticket.subject
    # Written in the survey's language, as an internal note carrying the customer's comment.
    assert ticket.subject.startswith("调查跟进：售后服务调查")
    (note,) = ticket.messages
    assert note.kind == "note" and note.body.endswith("还有什么想告诉我们的？\n很好")


def test_a_failure_after_the_answer_was_written_stores_nothing_and_keeps_the_link(client, survey):
    """A reaction to the detractor's answer fails: no response, no ticket, and the link can be used again."""
    invitation, token = invite(survey, make_customer())
    page = client.get(f"/s/{token}")
    load_handlers()

    def fail(uow, event):
        assert db.session.get(SurveyResponse, event.response_id) is not None  # written, then failing
        raise RuntimeError("the follow-up could not be opened")

    handles(DetractorAnswered)(fail)
    try:
        with pytest.raises(RuntimeError, match="could not be opened"):
            submit(client, f"/s/{token}", answers(survey, nps="2"), page)
    finally:
        _handlers[DetractorAnswered].remove(fail)
    assert stored() == [] and db.session.scalars(sa.select(Ticket)).all() == []
    assert db.session.get(Invitation, invitation.id).status == "opened"
    assert submit(client, f"/s/{token}", answers(survey, nps="2"), page).status_code == 200
    assert len(stored()) == 1


def test_csrf_honeypot_and_rate_limit_guard_the_form(client, app, survey):
    data = answers(survey)
    assert client.post("/p/after-sales", data=data).status_code == 400
    bot = submit(client, "/p/after-sales", data | {"website": "http://spam.example"})
    assert bot.status_code == 200 and stored() == []
    app.config["SURVEY_RATE_LIMIT"] = "2 per minute"
    codes = [submit(client, "/p/after-sales", data).status_code for _ in range(3)]
    assert codes[-1] == 429 and len(stored()) < 3


def test_text_is_escaped_on_the_page(client, survey):
    edit(survey, intro="<script>alert(1)</script>")
    html = client.get("/p/after-sales").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_a_survey_edited_in_this_worker_shows_at_once(client, survey):
    assert "售后服务调查" in client.get("/p/after-sales").text  # now cached
    edit(survey, title="售后服务满意度调查", public_link=False)
    assert client.get("/p/after-sales").status_code == 404
    edit(survey, public_link=True)
    assert "售后服务满意度调查" in client.get("/p/after-sales").text


def test_reopening_an_opened_link_writes_nothing(client, survey):
    """Only the first opening of a link takes the write lock; a reload reads."""
    invitation, token = invite(survey, make_customer())
    with statements_run() as first:
        assert client.get(f"/s/{token}").status_code == 200
    with statements_run() as again:
        assert client.get(f"/s/{token}").status_code == 200
    assert first.count("UPDATE SURVEY_INVITATION SET") == 1
    assert [s for s in again if s.startswith(("UPDATE", "INSERT", "BEGIN IMMEDIATE"))] == []
    assert db.session.get(Invitation, invitation.id).status == "opened"


def test_an_anonymous_answer_is_stored_with_two_statements(client, survey):
    """The hot path stays lean: one insert for the response, one for all its answers, nothing read."""
    page = client.get("/p/after-sales")  # reads the survey into this worker's cache
    given = answers(survey)
    with statements_run() as seen:
        assert submit(client, "/p/after-sales", given, page).status_code == 200
    assert [s for s in seen if s not in ("BEGIN", "BEGIN IMMEDIATE")] == [
        "INSERT INTO SURVEY_RESPONSE",
        "INSERT INTO SURVEY_ANSWER",
    ]


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
def test_a_busy_database_keeps_every_answer_and_asks_to_send_again(client, survey):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock; PostgreSQL does not lock a new response's insert")
    _invitation, token = invite(survey, make_customer())
    url = f"/s/{token}"
    with write_lock_held_elsewhere():
        page = client.get(url)  # opening is bookkeeping: the questions are shown all the same
        assert page.status_code == 200
        busy = submit(client, url, answers(survey, nps="4", liked=("态度", "价格"), text="排队太久"), page)
    assert busy.status_code == 503
    html = busy.text
    assert "数据库繁忙，您的回答尚未保存。请再次提交。" in html  # the survey's language
    assert 'value="4" checked' in html and 'value="态度" checked' in html and 'value="价格" checked' in html
    assert "排队太久</textarea>" in html and stored() == []
    again = {"csrf_token": csrf_token(html), "submission_key": csrf_token(html, "submission_key")}
    assert client.post(url, data=again | answers(survey, nps="4", text="排队太久")).status_code == 200
    assert client.post(url, data=again | answers(survey, nps="4", text="排队太久")).status_code == 200
    assert len(stored()) == 1  # the key the busy page kept: sent twice, stored once


# Malformed requests: a 4xx or the questions again, never a server error, nothing stored.


def test_an_answer_sent_as_a_file_part_is_a_missing_answer_and_keeps_the_rest(client, survey):
    """Is a required answer sent as a file (multipart) read as missing, the other answers kept?"""
    nps = next(q for q in survey.questions if q.kind == "nps")
    data = answers(survey, text="送货太慢了") | {f"q{nps.id}": (io.BytesIO(b"9"), "nps.txt")}
    response = submit(client, "/p/after-sales", data)
    assert response.status_code == 422
    assert f'href="#q{nps.id}"' in response.text and "送货太慢了</textarea>" in response.text
    assert stored() == []


def test_a_submission_key_sent_as_a_file_part_is_ignored(client, survey):
    """Does a hidden field sent as a file count as absent, the answers stored once?"""
    page = client.get("/p/after-sales")
    data = answers(survey) | {
        "csrf_token": csrf_token(page.text),
        "submission_key": (io.BytesIO(b"key"), "key.txt"),
    }
    assert client.post("/p/after-sales", data=data).status_code == 200
    assert len(stored()) == 1


@pytest.mark.parametrize("body", ['{"q1": 9}', "[]", "[" * 5000])
def test_a_json_body_is_no_answer_and_a_400(client, survey, body):
    """Is a JSON body (numbers, lists, deep nesting) refused with 400, storing nothing?"""
    response = client.post("/p/after-sales", data=body, content_type="application/json")
    assert response.status_code == 400
    assert stored() == []


def test_a_nul_character_in_an_answer_is_a_400(client, survey):
    """Is an answer holding NUL (which PostgreSQL cannot store) refused with 400, storing nothing?"""
    assert submit(client, "/p/after-sales", answers(survey, text="a\x00b")).status_code == 400
    assert stored() == []


@pytest.mark.parametrize("url", ["/s/abc%00def", "/p/after%00sales"])
def test_a_nul_character_in_a_survey_link_is_a_404(client, survey, url):
    """Does a link holding NUL name nothing (404) instead of reaching the database?"""
    assert client.get(url).status_code == 404
