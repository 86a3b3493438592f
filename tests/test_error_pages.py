"""The error pages say what is known: a busy database lost the change, an unknown fault may have."""

from __future__ import annotations

import pytest

from models.uow import WriteBusy


@pytest.fixture
def failing_app(app):
    """The app with pages that fail as a door might, answered as in production (not raised)."""

    def fault():
        raise RuntimeError("a fault in the code")

    def busy():
        raise WriteBusy("database is locked")

    app.add_url_rule("/test-fault", view_func=fault)
    app.add_url_rule("/test-busy", view_func=busy)
    app.add_url_rule("/api/v1/test-busy", endpoint="api_busy", view_func=busy)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_the_500_page_does_not_claim_that_nothing_was_lost(failing_app, client):
    response = client.get("/test-fault")
    assert response.status_code == 500
    assert (
        "Something went wrong on our side. If you were saving something, it may not have been saved; "
        "please check and try again." in response.text
    )
    assert "Nothing was lost" not in response.text


def test_a_busy_database_is_a_503_that_says_the_change_was_not_saved(failing_app, client):
    response = client.get("/test-busy")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert "The database was busy; your change was not saved. Please try again." in response.text


def test_a_busy_database_answers_the_api_in_json(failing_app, client):
    response = client.get("/api/v1/test-busy")
    assert response.status_code == 503
    assert response.json == {
        "error": {
            "code": "database_busy",
            "message": "The database was busy; your change was not saved. Please try again.",
        }
    }
