"""Response headers and files: a script-tight CSP on every page, no caching of personal data,
and instance files (database, keys, secret, backups) readable by their owner only."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from models import db
from models.crypto import new_key
from models.surveys.builder import Question, Survey
from models.surveys.invitations import create_invitation
from models.uow import SYSTEM, unit_of_work
from models.user import Role, create_staff_user
from tests.conftest import csrf_token
from tests.factories import make_customer, make_ticket

NONCE = re.compile(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{24})'")
INLINE_HANDLER = re.compile(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", re.S)


def expected_policy(nonce: str) -> str:
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "object-src 'none'; "
        "base-uri 'self'; "
        "frame-ancestors 'none'; "
        "form-action 'self'"
    )


def assert_script_tight(response) -> str:
    """The response's CSP is ours, and its page runs no script the CSP would refuse."""
    policy = response.headers["Content-Security-Policy"]
    nonce = NONCE.search(policy).group(1)
    assert policy == expected_policy(nonce)
    html = response.get_data(as_text=True)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert f'nonce="{nonce}"' in tag, tag
    assert INLINE_HANDLER.findall(html) == []
    return nonce


def assert_private(response) -> None:
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def survey(app) -> Survey:
    survey = Survey(title="After sales", language="en", public_link=True, public_slug="after-sales")
    survey.questions = [Question(position=1, kind="rating", prompt="Happy?", required=True)]
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
    return survey


def test_public_pages_and_errors_have_the_policy_and_are_not_cached(app, client, survey):
    with unit_of_work(SYSTEM):
        _invitation, token = create_invitation(survey, None)
    _ticket, code = make_ticket()
    pages = {
        "/login": 200,
        "/feedback": 200,
        "/track": 200,
        f"/track/{code}": 200,
        f"/s/{token}": 200,
        "/p/after-sales": 200,
        "/no-such-page": 404,
        "/s/no-such-token": 404,
    }
    for path, status in pages.items():
        response = client.get(path)
        assert response.status_code == status, path
        assert_script_tight(response)
        assert_private(response)


def test_a_survey_answered_wrong_focuses_its_error_summary_without_a_script(client, survey):
    page = client.get("/p/after-sales")
    data = {"csrf_token": csrf_token(page.text), "submission_key": csrf_token(page.text, "submission_key")}
    response = client.post("/p/after-sales", data=data)
    assert response.status_code == 422
    assert '<div class="alert" role="alert" id="error-summary" tabindex="-1" autofocus>' in response.text
    assert "<script" not in response.text
    assert_script_tight(response)


def test_each_response_has_its_own_nonce(client):
    nonces = {assert_script_tight(client.get("/login")) for _ in range(3)}
    assert len(nonces) == 3


@pytest.mark.parametrize("app_config", [{"PROPAGATE_EXCEPTIONS": False}])
def test_a_server_error_page_has_the_policy_and_is_not_cached(app, client):
    def fail():
        raise RuntimeError("failed on purpose")

    app.add_url_rule("/test-fail", "test_fail", fail)
    response = client.get("/test-fail")
    assert response.status_code == 500
    assert "Something went wrong on our side." in response.text
    assert_script_tight(response)
    assert_private(response)


def test_api_answers_are_json_with_the_policy_and_not_cached(client):
    from models.api_key import create_api_key

    customer = make_customer()
    with unit_of_work(SYSTEM):
        _key, key = create_api_key("Till", "pos", ["points:read"])
    for path, headers, status in [
        ("/api/v1/openapi.json", {}, 200),
        ("/api/v1/ping", {}, 401),
        (f"/api/v1/customers/{customer.member_no}/points", {"Authorization": f"Bearer {key}"}, 200),
    ]:
        response = client.get(path, headers=headers)
        assert (response.status_code, response.is_json) == (status, True), path
        assert_script_tight(response)
        assert_private(response)


def staff_pages(customer_id: int, ticket_id: int) -> list[str]:
    """Our own pages and Flask-Admin's: lists with filters, actions and delete buttons, forms
    (the survey builder's inline questions), details, the dashboard's charts, results."""
    return [
        "/admin/",
        "/admin/customers/",
        "/admin/customers/new/",
        f"/admin/customers/details/?id={customer_id}",
        f"/admin/customers/edit/?id={customer_id}",
        "/admin/tickets/",
        f"/admin/tickets/ticket/{ticket_id}",
        "/admin/survey_builder/",
        "/admin/survey_builder/new/",
        "/admin/survey_invite/",
        "/admin/survey_results/",
        "/admin/rewards/",
        "/admin/staff/",
        "/admin/audit/",
        "/admin/account/",
        "/admin/jobs/",
    ]


def test_staff_pages_run_no_inline_handlers_and_are_not_cached(client, auth):
    assert auth.login(Role.ADMIN).status_code == 302
    customer = make_customer()
    ticket, _code = make_ticket(customer_id=customer.id)
    for path in staff_pages(customer.id, ticket.id):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_script_tight(response)
        assert_private(response)
    # The list's delete buttons and bulk actions ask through data attributes instead.
    listing = client.get("/admin/customers/").text
    assert 'data-patron-confirm="Are you sure you want to delete this record?"' in listing
    assert 'data-patron-action="delete"' in listing
    assert "/static/patron-admin.js" in listing


def test_the_survey_builder_adds_questions_without_an_inline_handler(client, auth):
    assert auth.login(Role.ADMIN).status_code == 302
    page = client.get("/admin/survey_builder/new/").text
    assert 'data-patron-inline-add="questions"' in page


def test_csv_exports_are_not_cached(client, auth):
    make_customer()
    assert auth.login(Role.ADMIN).status_code == 302
    response = client.get("/admin/customers/export/csv/")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert_private(response)


def test_static_files_may_be_cached(client):
    for path in ["/static/patron-admin.js", "/admin/static/admin/js/helpers.js"]:
        response = client.get(path)
        assert response.status_code == 200
        # Flask's own answer for static files: kept, but checked again (ETag) before use.
        assert response.headers["Cache-Control"] == "no-cache"


# Files ------------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def own_instance(tmp_path, monkeypatch):
    """An instance folder the app makes for itself, as on a first run: SQLite, keys, secret."""
    for name in ("DATABASE_URL", "PATRON_SECRET_KEY", "PATRON_ENCRYPTION_KEYS", "PATRON_BLIND_INDEX_KEY"):
        monkeypatch.delenv(name, raising=False)
    previous = os.umask(0o022)  # a usual login shell's umask: files 0644 unless the app says so
    try:
        yield tmp_path / "instance"
    finally:
        os.umask(previous)


def first_run(instance: Path):
    """Create the app, migrate its database and write a row; returns the app with its engine open."""
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(instance)})
    with app.app_context():
        upgrade()
        with unit_of_work(SYSTEM):
            create_staff_user("files@test.example", "correct horse battery staple 42", Role.AGENT)
        db.session.execute(sa.text("SELECT 1"))
    return app


def test_database_keys_and_secret_are_created_private(own_instance):
    app = first_run(own_instance)
    try:
        with app.app_context():
            # The -wal and -shm files exist while a connection is open.
            with db.engine.connect():
                names = sorted(p.name for p in own_instance.iterdir())
                assert names == [
                    "keys.json",
                    "patron.sqlite",
                    "patron.sqlite-shm",
                    "patron.sqlite-wal",
                    "secret_key",
                ]
                assert {name: oct(mode(own_instance / name)) for name in names} == {
                    name: "0o600" for name in names
                }
        assert oct(mode(own_instance)) == "0o700"
    finally:
        with app.app_context():
            db.engine.dispose()


def test_files_written_after_the_start_are_private(own_instance):
    create_app({"TESTING": True, "INSTANCE_PATH": str(own_instance), "PATRON_KEY_MATERIAL": fresh_keys()})
    backup = own_instance / "backups" / "patron-backup.bin"
    backup.parent.mkdir()
    backup.write_bytes(b"sealed")
    assert (oct(mode(backup.parent)), oct(mode(backup))) == ("0o700", "0o600")


def test_an_older_install_with_readable_files_is_made_private(own_instance):
    own_instance.mkdir(mode=0o755)
    keys = {"encryption_keys": {"1": new_key()}, "blind_index_key": new_key()}
    files = {
        "keys.json": json.dumps(keys),
        "secret_key": "an older secret",
        "patron.sqlite": "",
    }
    for name, text in files.items():
        (own_instance / name).write_text(text)
        (own_instance / name).chmod(0o644)
    create_app({"TESTING": True, "INSTANCE_PATH": str(own_instance)})
    assert {name: oct(mode(own_instance / name)) for name in files} == {name: "0o600" for name in files}


def test_keys_written_by_a_key_rotation_are_private(own_instance, runner_for_own_instance):
    result = runner_for_own_instance.invoke(args=["rotate-keys", "--new-key"])
    assert result.exit_code == 0, result.output
    keys = own_instance / "keys.json"
    assert sorted(json.loads(keys.read_text())["encryption_keys"]) == ["1", "2"]
    assert oct(mode(keys)) == "0o600"


@pytest.fixture
def runner_for_own_instance(own_instance):
    app = first_run(own_instance)
    yield app.test_cli_runner()
    with app.app_context():
        db.engine.dispose()


def fresh_keys():
    return {"encryption_keys": {1: new_key()}, "blind_index_key": new_key(), "source": "test"}
