"""Behind reverse proxies: the client's address and scheme come from the trusted hops only."""

from __future__ import annotations

import pytest
from flask import request, url_for

from app import create_app
from tests.conftest import base_config, csrf_token
from tests.factories import audit_events

PROXY = "10.0.0.2"  # the reverse proxy's own address, as the app's socket sees it
ONE_PROXY = {"TRUSTED_PROXIES": 1, "PUBLIC_FORM_RATE_LIMIT": "2 per minute"}
NO_PROXY = {"TRUSTED_PROXIES": 0, "PUBLIC_FORM_RATE_LIMIT": "2 per minute"}


def send_feedback(client, peer: str, forwarded_for: str | None = None, message: str = "Broken parcel") -> int:
    """Post the public form from a socket address, with an X-Forwarded-For header if given."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    environ = {"REMOTE_ADDR": peer}
    page = client.get("/feedback", headers=headers, environ_base=environ)
    data = {"kind": "complaint", "message": message, "csrf_token": csrf_token(page.text)}
    return client.post("/feedback", data=data, headers=headers, environ_base=environ).status_code


def audited_addresses() -> list[str | None]:
    return [event.ip for event in audit_events("ticket.create")]


@pytest.mark.parametrize("app_config", [NO_PROXY])
def test_without_trusted_proxies_a_forged_forwarded_for_changes_neither_bucket_nor_audit(client):
    """Can a client without a proxy escape the rate limit or fake its audited address?"""
    forged = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    statuses = [send_feedback(client, "198.51.100.7", address) for address in forged]
    assert statuses == [302, 302, 429]
    assert audited_addresses() == ["198.51.100.7", "198.51.100.7"]
    # Another client (another socket address) has a bucket of its own.
    assert send_feedback(client, "198.51.100.8", "198.51.100.7") == 302
    assert audited_addresses() == ["198.51.100.7", "198.51.100.7", "198.51.100.8"]


@pytest.mark.parametrize("app_config", [ONE_PROXY])
def test_with_one_proxy_two_clients_behind_it_get_separate_buckets(client):
    """Do clients behind the proxy share one rate-limit bucket (the proxy's address)?"""
    first = [send_feedback(client, PROXY, "203.0.113.1") for _ in range(3)]
    second = [send_feedback(client, PROXY, "203.0.113.2") for _ in range(2)]
    assert first == [302, 302, 429]
    assert second == [302, 302]
    assert audited_addresses() == ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"]


@pytest.mark.parametrize("app_config", [ONE_PROXY])
def test_with_one_proxy_the_last_hop_counts_not_what_the_client_wrote(client):
    """Can a client behind the proxy pick its address by sending its own X-Forwarded-For?"""
    # The proxy appends the address it saw to whatever the client sent.
    statuses = [send_feedback(client, PROXY, f"192.0.2.{n}, 203.0.113.9") for n in range(3)]
    assert statuses == [302, 302, 429]
    assert audited_addresses() == ["203.0.113.9", "203.0.113.9"]


@pytest.mark.parametrize("app_config", [NO_PROXY, ONE_PROXY])
def test_a_request_without_forwarded_for_is_the_socket_address(client):
    assert send_feedback(client, PROXY) == 302
    assert audited_addresses() == [PROXY]


def session_cookie(response) -> str:
    (cookie,) = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    return cookie


def what_the_app_saw(app, client, headers: dict[str, str], peer: str = PROXY) -> dict:
    """The client address, scheme and an external link as a view sees them behind these headers."""

    def seen():
        return {
            "remote_addr": request.remote_addr,
            "scheme": request.scheme,
            "link": url_for("surveys.feedback", _external=True),
        }

    app.add_url_rule("/test-seen", "test_seen", seen)
    return client.get("/test-seen", headers=headers, environ_base={"REMOTE_ADDR": peer}).json


FORWARDED_HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.1"}


@pytest.mark.parametrize("app_config", [ONE_PROXY])
def test_https_at_the_trusted_proxy_makes_secure_cookies_and_https_links(app, client):
    assert what_the_app_saw(app, client, FORWARDED_HTTPS) == {
        "remote_addr": "203.0.113.1",
        "scheme": "https",
        "link": "https://localhost/feedback",
    }
    response = client.get("/feedback", headers=FORWARDED_HTTPS)
    assert "; Secure" in session_cookie(response)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("app_config", [NO_PROXY])
def test_a_forged_forwarded_proto_without_trusted_proxies_changes_nothing(app, client):
    assert what_the_app_saw(app, client, FORWARDED_HTTPS) == {
        "remote_addr": PROXY,
        "scheme": "http",
        "link": "http://localhost/feedback",
    }
    response = client.get("/feedback", headers=FORWARDED_HTTPS)
    assert "; Secure" not in session_cookie(response)
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("value", [-1, "two", True, 1.5])
def test_a_trusted_proxy_count_that_is_not_a_whole_number_stops_the_start(
    value, database_url, tmp_path, key_material
):
    with pytest.raises(ValueError, match="TRUSTED_PROXIES must be a whole number of proxies"):
        create_app(base_config(tmp_path, database_url, key_material) | {"TRUSTED_PROXIES": value})


def test_the_proxy_count_is_read_from_the_environment(monkeypatch, database_url, tmp_path, key_material):
    monkeypatch.setenv("PATRON_TRUSTED_PROXIES", "2")
    app = create_app(base_config(tmp_path, database_url, key_material))
    assert app.config["TRUSTED_PROXIES"] == 2
