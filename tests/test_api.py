"""The JSON API (/api/v1): keys and scopes, purchases, refunds, balances, redemptions, its contract.

Every call goes through `Api.call`, which checks the answer against api/openapi.py: the status
must be one the document lists for the operation, and the body must match its schema.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import jsonschema
import pytest
import sqlalchemy as sa
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import HTTPException

from api import bp as api_bp
from models import db
from models.api_key import SCOPES, create_api_key, find_api_key, revoke
from models.loyalty.ledger import PointsEntry, add_months
from models.loyalty.purchases import Purchase
from models.loyalty.rewards import Redemption
from models.uow import SYSTEM, unit_of_work
from tests.factories import (
    audit_events,
    failing_after_insert,
    make_customer,
    make_reward,
    write_lock_held_elsewhere,
)


class _Missing:
    """A field left out of a request body."""

    def __repr__(self) -> str:
        return "MISSING"


PREFIX = api_bp.url_prefix
DOCUMENT_URI = "urn:patron:api:v1"
ALL_SCOPES = sorted(SCOPES)
MISSING = _Missing()
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-times, as JSON Schema's date-time format means."""
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return RFC3339.fullmatch(value) is not None


def openapi_path(rule: str) -> str:
    """A Flask rule of the blueprint as an OpenAPI path: /purchases/<order_ref>/refund → …/{order_ref}/…."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.removeprefix(PREFIX))


def pointer(*parts: str) -> str:
    """A JSON pointer into the document, escaped for use as a URI fragment."""
    return "/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


def check_body(document: dict, fragment: str, body: object) -> None:
    """Validate a body against the schema at a pointer, resolving $ref in the whole document."""
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{DOCUMENT_URI}#{fragment}"}
    jsonschema.Draft202012Validator(schema, registry=registry, format_checker=FORMATS).validate(body)


class Api:
    """Calls /api/v1 through the test client and checks each answer against the OpenAPI document."""

    def __init__(self, app, client):
        self.app, self.client = app, client
        self.document = client.get(f"{PREFIX}/openapi.json").get_json()

    def operation(self, method: str, path: str) -> tuple[str, str] | None:
        """The document's (path, method) for a request, or None where no API route answers it."""
        adapter = self.app.url_map.bind("localhost")
        try:
            rule, _args = adapter.match(PREFIX + path.split("?")[0], method, return_rule=True)
        except HTTPException:
            return None
        return openapi_path(rule.rule), method.lower()

    def call(self, method: str, path: str, key: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.client.open(PREFIX + path, method=method, headers=headers, **kwargs)
        self.check(method, path, response)
        return response

    def check(self, method: str, path: str, response) -> None:
        assert response.is_json, f"{method} {path}: {response.status} is not JSON"
        found = self.operation(method, path)
        if found is None:
            check_body(self.document, pointer("components", "schemas", "Error"), response.get_json())
            return
        doc_path, doc_method = found
        responses = self.document["paths"][doc_path][doc_method]["responses"]
        status = str(response.status_code)
        assert status in responses, (
            f"{method} {path} answered {status}; the document lists {sorted(responses)}"
        )
        fragment = pointer("paths", doc_path, doc_method, "responses", status, "content", "application/json")
        check_body(self.document, fragment + "/schema", response.get_json())

    def get(self, path: str, key: str | None = None, **kwargs):
        return self.call("GET", path, key, **kwargs)

    def post(self, path: str, key: str | None = None, **kwargs):
        return self.call("POST", path, key, **kwargs)


@pytest.fixture
def api(app, client) -> Api:
    return Api(app, client)


def new_key(*scopes: str, source: str = "pos", name: str = "Till 1") -> str:
    """The text of a new committed API key."""
    with unit_of_work(SYSTEM):
        _key, text = create_api_key(name, source, list(scopes))
    return text


@pytest.fixture
def key(app) -> str:
    return new_key(*ALL_SCOPES)


@pytest.fixture
def member(app) -> str:
    return make_customer().member_no


def case_id(value: object) -> str:
    """A short test id for a parametrised request body: field=value, ..."""
    if isinstance(value, dict):
        return ", ".join(f"{name}={field!r}"[:44] for name, field in value.items())
    return str(value)


def purchase(member_no: str, order_ref: str = "A-1", amount: str = "128.50", **fields) -> dict:
    """A valid purchase body; fields set to MISSING are left out."""
    body = {"customer": {"member_no": member_no}, "order_ref": order_ref, "amount": amount, "currency": "CNY"}
    body.update(fields)
    return {name: value for name, value in body.items() if value is not MISSING}


def ledger_count(member_no: str) -> int:
    return db.session.scalar(
        sa.select(sa.func.count(PointsEntry.id)).join(PointsEntry.customer).filter_by(member_no=member_no)
    )


def assert_error(response, status: int, code: str | None = None, mentions: str = "") -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    if code:
        assert error["code"] == code
    assert mentions.lower() in error["message"].lower()


# Every operation, with a concrete path, for the access matrix.
SCOPED_OPERATIONS = [
    ("POST", "/purchases"),
    ("POST", "/purchases/A-1/refund"),
    ("GET", "/customers/M00000001/points"),
    ("GET", "/rewards"),
    ("POST", "/redemptions"),
]
OPERATIONS = [("GET", "/ping"), *SCOPED_OPERATIONS]
# Refunding an order the key's source never posted: 422 today; 404 would say it better.
NO_SUCH_ORDER = (404, 422)

# The contract ------------------------------------------------------------------------


def test_the_document_lists_exactly_the_blueprints_routes(app, api):
    """Does the OpenAPI document describe every API route, and only those?"""
    routes = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(f"{api_bp.name}.") and rule.endpoint != f"{api_bp.name}.openapi"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(method.upper(), path) for path, item in api.document["paths"].items() for method in item}
    assert documented == routes


def test_the_contract_check_rejects_a_body_the_document_does_not_allow(api):
    """Would the schema check notice a response missing a required field?"""
    fragment = pointer("paths", "/purchases", "post", "responses", "201", "content", "application/json")
    with pytest.raises(jsonschema.ValidationError, match="'purchase' is a required property"):
        check_body(api.document, fragment + "/schema", {"created": True, "balance": 1, "tier": "member"})
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        points = {"member_no": "M1", "balance": 0, "tier": "member", "ledger": []}
        expiring = [{"expires_at": "next year", "points": 1}]
        check_body(api.document, pointer("components", "schemas", "Points"), points | {"expiring": expiring})


def test_the_document_is_served_without_a_key(client):
    """Can an integrator read the OpenAPI document before they have a key?"""
    response = client.get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")
    assert response.get_json()["servers"] == [{"url": f"http://localhost{PREFIX}"}]


def test_an_unknown_api_route_answers_json(api, key):
    """Does a wrong URL under /api/v1 get a JSON 404, not an HTML page?"""
    assert_error(api.get("/nothing-here", key), 404, "not_found")


def test_a_wrong_method_answers_json_naming_the_allowed_ones(api, key):
    """Does a wrong method get a JSON 405 with the Allow header that HTTP requires?"""
    response = api.call("PUT", "/purchases", key)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers.get("Allow", "")


# Keys and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_a_request_without_a_key_is_refused(api, method, path):
    """Is every operation closed to a request without a key (401, JSON)?"""
    assert_error(api.call(method, path, json={}), 401, "unauthorized", "API key")


@pytest.mark.parametrize(
    "presented",
    [
        "not-a-key",
        "ptr_000000000000_wrongsecret",
        "wrong-secret",  # the right lookup with another secret, built below
        "Basic dXNlcjpwYXNz",
    ],
)
def test_a_wrong_key_is_refused(api, key, presented):
    """Is a key that does not match a stored one refused with 401?"""
    if presented == "wrong-secret":
        prefix, lookup, _secret = key.split("_", 2)
        presented = f"{prefix}_{lookup}_{'x' * 43}"
    assert_error(api.get("/ping", presented), 401, "unauthorized")


def test_a_revoked_key_is_refused(api, key):
    """Does a key stop working once it is revoked?"""
    assert api.get("/ping", key).status_code == 200
    with unit_of_work(SYSTEM):
        revoke(find_api_key(key))
    assert_error(api.get("/ping", key), 401, "unauthorized")


def test_the_x_api_key_header_works_too(api, key):
    """Is a key accepted in the X-API-Key header as well as in Authorization?"""
    response = api.get("/ping", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "key": "Till 1"}


@pytest.mark.parametrize(("method", "path"), SCOPED_OPERATIONS)
def test_a_key_without_the_scope_is_forbidden(api, method, path):
    """Does every scoped operation refuse a key that holds all the other scopes (403)?"""
    doc_path, doc_method = api.operation(method, path)
    scope = api.document["paths"][doc_path][doc_method]["x-scope"]
    other_scopes = [s for s in ALL_SCOPES if s != scope]
    response = api.call(method, path, new_key(*other_scopes), json={})
    assert_error(response, 403, "forbidden", scope)


def test_every_scope_named_in_the_document_exists(api):
    """Does each operation's x-scope name a scope that keys can be given?"""
    named = {op.get("x-scope") for item in api.document["paths"].values() for op in item.values()}
    assert named - {None} == set(SCOPES)


# Purchases ---------------------------------------------------------------------------


def test_a_purchase_is_recorded_with_its_points_and_balance(api, key, member):
    """Does POST /purchases answer 201 with the points earned and the new balance?"""
    response = api.post("/purchases", key, json=purchase(member, amount="128.50", channel="online"))
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] is True
    assert body["balance"] == 128 and body["tier"] == "member"
    assert body["purchase"] | {"purchased_at": None} == {
        "order_ref": "A-1",
        "source": "pos",
        "member_no": member,
        "amount": "128.50",
        "currency": "CNY",
        "channel": "online",
        "purchased_at": None,
        "points": 128,
        "status": "completed",
    }
    assert ledger_count(member) == 1


def test_a_purchase_leaves_an_audit_event_by_the_key(api, key, member):
    """Does a purchase posted through the API leave its audit event, with the key as the actor?"""
    api.post("/purchases", key, json=purchase(member))
    api.post("/purchases", key, json=purchase(member))  # a replay changes nothing: no second event
    purchase_id = db.session.scalar(sa.select(Purchase.id))
    events = audit_events("purchase.create")
    assert [(e.object_id, e.actor, e.actor_id, e.ip) for e in events] == [
        (str(purchase_id), "api:Till 1", None, "127.0.0.1")
    ]
    assert db.session.scalar(sa.select(PointsEntry.actor)) == "api:Till 1"


def test_a_failure_after_a_purchase_keeps_neither_it_nor_its_audit_event(api, key, member):
    """If the request fails after the purchase was written, are the purchase, points and event gone?"""
    written = "NEW.action = 'purchase.create' AND EXISTS (SELECT 1 FROM purchase)"
    with failing_after_insert("audit_event", written):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            api.client.post(f"{PREFIX}/purchases", json=purchase(member), headers={"X-API-Key": key})
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0
    assert ledger_count(member) == 0 and audit_events("purchase.create") == []


@pytest.mark.parametrize("app_config", [{"SQLITE_BUSY_TIMEOUT_MS": 50}])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/purchases", "purchase"), ("/purchases/A-1/refund", None), ("/redemptions", "redemption")],
)
def test_a_busy_database_answers_503_busy_and_stores_nothing(api, key, member, path, body):
    """Is a write that finds the database busy answered with the documented 503 "busy", storing nothing?"""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("provokes SQLite's write lock")
    api.post("/purchases", key, json=purchase(member, amount="500"))
    reward = make_reward()
    bodies = {
        "purchase": purchase(member, order_ref="A-2"),
        "redemption": {"member_no": member, "reward_id": reward.id},
    }
    with write_lock_held_elsewhere():
        response = api.post(path, key, json=bodies.get(body))
    assert_error(response, 503, "busy", "not saved")
    assert response.headers["Retry-After"] == "1"
    assert db.session.scalars(sa.select(Purchase.status)).all() == ["completed"]
    assert ledger_count(member) == 1 and db.session.scalar(sa.select(sa.func.count(Redemption.id))) == 0


def test_posting_the_same_order_again_changes_nothing(api, key, member):
    """Is a repeated order answered 200 with created false, the first result and no second entry?"""
    first = api.post("/purchases", key, json=purchase(member)).get_json()
    again = api.post("/purchases", key, json=purchase(member))
    assert again.status_code == 200
    body = again.get_json()
    assert body["created"] is False
    assert body["purchase"] == first["purchase"] and body["balance"] == first["balance"] == 128
    assert ledger_count(member) == 1


def test_the_amount_is_answered_as_recorded(api, key, member):
    """Is the amount answered with its two recorded decimals, the same on the first post and a replay?"""
    first = api.post("/purchases", key, json=purchase(member, amount="128.5")).get_json()
    again = api.post("/purchases", key, json=purchase(member, amount="128.5")).get_json()
    assert first["purchase"]["amount"] == again["purchase"]["amount"] == "128.50"


def test_the_same_order_reference_with_another_amount_is_a_conflict(api, key, member):
    """Is an order reference reused with a different amount refused with 409, changing nothing?"""
    api.post("/purchases", key, json=purchase(member, amount="128.50"))
    response = api.post("/purchases", key, json=purchase(member, amount="99.00"))
    assert_error(response, 409, "order_conflict", "order reference")
    assert ledger_count(member) == 1
    assert db.session.scalar(sa.select(Purchase.amount).filter_by(order_ref="A-1")) == Decimal("128.50")


def test_the_same_order_reference_for_another_customer_is_a_conflict(api, key, member):
    """Is an order reference reused for a different customer refused with 409?"""
    api.post("/purchases", key, json=purchase(member))
    other = make_customer().member_no
    assert_error(api.post("/purchases", key, json=purchase(other)), 409, "order_conflict")
    assert ledger_count(other) == 0


def test_another_integration_may_use_the_same_order_reference(api, key, member):
    """Are order references unique per key source, not across integrations?"""
    api.post("/purchases", key, json=purchase(member))
    web = new_key("purchases:write", source="webshop")
    response = api.post("/purchases", web, json=purchase(member))
    assert response.status_code == 201
    assert response.get_json()["balance"] == 256


@pytest.mark.parametrize("field", ["email", "phone"])
def test_a_customer_can_be_named_by_email_or_phone(api, key, field):
    """Can a POS name the customer by email or phone instead of the member number?"""
    customer = make_customer(email="li.na@example.com", phone="+86 138 0013 8000")
    who = {"email": "Li.Na@Example.com", "phone": "13800138000"}[field]
    response = api.post("/purchases", key, json=purchase("", customer={field: who}))
    assert response.status_code == 201
    assert response.get_json()["purchase"]["member_no"] == customer.member_no


def test_an_unknown_customer_is_not_found(api, key):
    """Is a purchase for a customer nobody knows answered 404 with a JSON error?"""
    response = api.post("/purchases", key, json=purchase("M99999999"))
    assert_error(response, 404, "unknown_customer", "customer")


def test_a_body_that_is_not_json_is_a_bad_request(api, key):
    """Is a body that does not parse as JSON refused with 400 and a message saying so?"""
    response = api.post("/purchases", key, data="amount=12", content_type="application/json")
    assert_error(response, 400, "bad_request", "JSON object")


def test_a_json_array_is_a_bad_request(api, key, member):
    """Is a JSON body that is not an object refused with 400?"""
    response = api.post("/purchases", key, json=[purchase(member)])
    assert_error(response, 400, "bad_request", "JSON object")


def purchases_stored() -> int:
    return db.session.scalar(sa.select(sa.func.count(Purchase.id)))


@pytest.mark.parametrize("where", ["order_ref", "currency", "customer", "a key"])
def test_a_lone_surrogate_anywhere_in_the_body_is_a_bad_request(api, key, member, where):
    """Is half a UTF-16 pair ("\\ud800"), which no database stores, refused with 400 and a message?"""
    body = purchase(member)
    if where == "customer":
        body["customer"] = {"email": "\ud800@example.com"}
    elif where == "a key":
        body["\ud800"] = 1
    else:
        body[where] += "\udfff"
    raw = json.dumps(body)  # ASCII: the surrogate travels as the escape \\ud800
    response = api.post("/purchases", key, data=raw, content_type="application/json")
    assert_error(response, 400, "bad_request", "lone surrogate")
    assert purchases_stored() == 0


def test_a_whole_surrogate_pair_is_ordinary_text(api, key, member):
    """Is an emoji written as a JSON surrogate pair ("\\ud83d\\ude00") accepted as the one character it is?"""
    raw = (
        '{"customer": {"member_no": "%s"}, "order_ref": "A-\\ud83d\\ude00", "amount": "1", "currency": "CNY"}'
    )
    response = api.post("/purchases", key, data=raw % member, content_type="application/json")
    assert response.status_code == 201
    assert response.get_json()["purchase"]["order_ref"] == "A-\U0001f600"


@pytest.mark.parametrize("depth", [17, 10_000])
@pytest.mark.parametrize("path", ["/purchases", "/redemptions"])
def test_a_deeply_nested_body_is_a_bad_request(api, key, path, depth):
    """Is a body nested deeper than 16 levels (10,000 deep included) refused with 400, not a 500?"""
    raw = '{"a":' * depth + "1" + "}" * depth
    response = api.post(path, key, data=raw, content_type="application/json")
    assert_error(response, 400, "bad_request", "nested at most 16 levels")


@pytest.mark.parametrize("raw", ["[]", '"order"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_a_bad_request(api, key, raw):
    """Is a JSON array, string, number, null or boolean body refused with 400?"""
    response = api.post("/purchases", key, data=raw, content_type="application/json")
    assert_error(response, 400, "bad_request", "The body must be a JSON object.")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("path", ["/purchases", "/redemptions"])
def test_a_body_not_sent_as_json_is_unsupported(api, key, member, path, content_type):
    """Is a body without Content-Type: application/json refused with 415, naming the type to send?"""
    raw = json.dumps(purchase(member))
    response = api.post(path, key, data=raw, content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "Content-Type: application/json")
    assert purchases_stored() == 0


@pytest.mark.parametrize("raw", [b'{"order_ref": "\xff\xfe"}', b'{"order_ref": "\xed\xa0\x80"}', b"\xc0\x80"])
def test_a_body_that_is_not_utf8_is_a_bad_request(api, key, raw):
    """Are invalid UTF-8 bytes (a lone surrogate in CESU-8, an overlong NUL) refused with 400?"""
    response = api.post("/purchases", key, data=raw, content_type="application/json")
    assert_error(response, 400, "bad_request", "not valid UTF-8")


@pytest.mark.parametrize("raw", ['{"amount": NaN}', '{"amount": Infinity}', '{"amount": %s}' % ("9" * 5000)])
def test_numbers_json_does_not_allow_are_a_bad_request(api, key, raw):
    """Are NaN, Infinity and a number of 5,000 digits refused with 400?"""
    response = api.post("/purchases", key, data=raw, content_type="application/json")
    assert_error(response, 400, "bad_request", "number JSON does not allow")


def test_a_body_over_64_kib_is_too_large(api, key, member):
    """Is a body larger than any real request refused with 413 before it is read?"""
    body = purchase(member) | {"note": "x" * 70_000}
    response = api.post("/purchases", key, json=body)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert purchases_stored() == 0


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": MISSING}, "amount"),
        ({"amount": "10000000000"}, "amount"),
        ({"customer": MISSING}, "customer"),
        ({"customer": {}}, "customer"),
        ({"customer": "M00000001"}, "customer"),
        ({"order_ref": MISSING}, "order_ref"),
        ({"order_ref": "   "}, "order_ref"),
        ({"order_ref": "A" * 65}, "order_ref"),
        ({"currency": "USD"}, "CNY"),
        ({"currency": MISSING}, "currency"),
        ({"channel": "fax"}, "channel"),
        ({"purchased_at": "2026-11-22T10:00:00"}, "time zone"),
        ({"purchased_at": "yesterday"}, "purchased_at"),
        ({"purchased_at": "2999-01-01T00:00:00+00:00"}, "future"),
        ({"purchased_at": "0001-01-01T00:00:00+08:00"}, "purchased_at"),
        ({"purchased_at": "9999-12-31T23:59:59-08:00"}, "purchased_at"),
    ],
    ids=case_id,
)
def test_an_invalid_purchase_is_refused_with_a_clear_message(api, key, member, fields, mentions):
    """Is each kind of malformed purchase a 422 JSON error naming the problem, recording nothing?"""
    response = api.post("/purchases", key, json=purchase(member, **fields))
    assert_error(response, 422, "invalid", mentions)
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 0


def test_a_purchase_with_its_own_time_is_dated_then(api, key, member):
    """Is purchased_at, given with a zone, stored and answered in UTC?"""
    response = api.post("/purchases", key, json=purchase(member, purchased_at="2026-01-05T18:30:00+08:00"))
    assert response.status_code == 201
    assert response.get_json()["purchase"]["purchased_at"] == "2026-01-05T10:30:00Z"


def request_schema_allows(document: dict, path: str, body: dict) -> bool:
    fragment = pointer("paths", path, "post", "requestBody", "content", "application/json", "schema")
    try:
        check_body(document, fragment, body)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "fields",
    [
        {"purchased_at": None},
        {"channel": None},
        {"amount": 128.5},
        {"amount": 128},
        {"amount": "1e2"},
        {"amount": "1_000"},
        {"amount": " 12 "},
    ],
    ids=case_id,
)
def test_a_purchase_is_accepted_exactly_when_the_document_allows_it(api, key, member, fields):
    """Does the API accept these edge-case bodies if, and only if, the OpenAPI document allows them?"""
    body = purchase(member, **fields)
    allowed = request_schema_allows(api.document, "/purchases", body)
    response = api.post("/purchases", key, json=body)
    verdict = "allows" if allowed else "forbids"
    assert (response.status_code == 201) == allowed, f"the document {verdict} it; {response.status}"


def test_the_largest_amount_the_document_allows_is_handled(api, key, member):
    """Is the largest documented amount recorded, or refused cleanly — never a server error?"""
    response = api.post("/purchases", key, json=purchase(member, amount="9999999999.99"))
    assert response.status_code in (201, 422)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/purchases", {"order_ref": "A\x00B"}),
        ("POST", "/purchases", {"customer": {"member_no": "M\x00"}}),
        ("POST", "/purchases", {"customer": {"email": "a\x00@example.com"}}),
        ("POST", "/purchases/A%00B/refund", None),
        ("GET", "/customers/M%00/points", None),
        ("POST", "/redemptions", {"member_no": "M\x00", "reward_id": 1}),
    ],
    ids=["order_ref", "customer", "email", "refund path", "points path", "redemption"],
)
def test_a_nul_character_gets_a_client_error(api, key, member, method, path, body):
    """Is a NUL character in any text (PostgreSQL refuses it) answered as a client error, never a 500?"""
    json = purchase(member, **body) if path == "/purchases" else body
    response = api.call(method, path, key, json=json)
    assert response.status_code < 500


# Refunds -----------------------------------------------------------------------------


def test_a_refund_takes_the_points_back(api, key, member):
    """Does refunding a purchase reverse its points and mark it refunded?"""
    api.post("/purchases", key, json=purchase(member, amount="300"))
    response = api.post("/purchases/A-1/refund", key)
    assert response.status_code == 200
    body = response.get_json()
    assert body["balance"] == 0 and body["member_no"] == member
    assert body["purchase"]["status"] == "refunded"
    kinds = db.session.scalars(sa.select(PointsEntry.kind).order_by(PointsEntry.id)).all()
    assert kinds == ["earn", "reverse"]


def test_refunding_twice_changes_nothing(api, key, member):
    """Is a second refund of the same order answered 200 without a second reversal?"""
    api.post("/purchases", key, json=purchase(member, amount="300"))
    api.post("/purchases/A-1/refund", key)
    response = api.post("/purchases/A-1/refund", key)
    assert response.status_code == 200 and response.get_json()["balance"] == 0
    assert ledger_count(member) == 2


def test_an_order_reference_with_a_slash_can_be_refunded(api, key, member):
    """Can an order posted with a reference like 2026/11/0042 be refunded through its URL?"""
    assert api.post("/purchases", key, json=purchase(member, order_ref="2026/11/0042")).status_code == 201
    response = api.post(f"/purchases/{quote('2026/11/0042', safe='')}/refund", key)
    assert response.status_code == 200
    assert response.get_json()["purchase"]["order_ref"] == "2026/11/0042"


def test_refunding_an_unknown_order_is_refused(api, key):
    """Is a refund of an order nobody posted a JSON client error naming the order reference?"""
    response = api.post("/purchases/NOPE/refund", key)
    assert response.status_code in NO_SUCH_ORDER
    assert "order reference" in response.get_json()["error"]["message"]


def test_a_key_cannot_refund_another_integrations_order(api, key, member):
    """Can a key refund only the orders posted under its own source?"""
    api.post("/purchases", key, json=purchase(member))
    web = new_key("purchases:write", source="webshop")
    assert api.post("/purchases/A-1/refund", web).status_code in NO_SUCH_ORDER
    assert api.post("/purchases/A-1/refund", key).status_code == 200


# Balances ----------------------------------------------------------------------------


def test_the_points_view_shows_balance_tier_ledger_and_expiry(api, key, member):
    """Does GET /customers/<member_no>/points show the balance, tier, ledger and what expires when?"""
    bought = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
    api.post("/purchases", key, json=purchase(member, "A-1", "2500", purchased_at=bought.isoformat()))
    api.post("/purchases", key, json=purchase(member, "A-2", "100"))
    api.post("/purchases/A-2/refund", key)
    response = api.get(f"/customers/{member}/points", key)
    assert response.status_code == 200
    body = response.get_json()
    assert body["member_no"] == member and body["balance"] == 2500 and body["tier"] == "silver"
    assert [(e["kind"], e["points"], e["balance_after"]) for e in body["ledger"]] == [
        ("reverse", -125, 2500),
        ("earn", 125, 2625),
        ("earn", 2500, 2500),
    ]
    assert body["ledger"][0]["reference"] == "pos:A-2"
    lapses = add_months(bought, 24).isoformat().replace("+00:00", "Z")
    assert body["expiring"] == [{"expires_at": lapses, "points": 2500}]


def test_a_customer_without_points_has_an_empty_account(api, key, member):
    """Does a customer who never bought anything show a zero balance, not an error?"""
    body = api.get(f"/customers/{member}/points", key).get_json()
    assert body == {"member_no": member, "balance": 0, "tier": "member", "expiring": [], "ledger": []}


def test_the_points_of_an_unknown_member_are_not_found(api, key):
    """Is an unknown member number answered 404 with a JSON error?"""
    assert_error(api.get("/customers/M99999999/points", key), 404, "unknown_customer")


# Rewards and redemptions -------------------------------------------------------------


def test_the_catalogue_lists_only_rewards_available_now(api, key):
    """Does GET /rewards leave out inactive, ended and not-yet-started rewards?"""
    now = datetime.now(UTC)
    make_reward(name_en="Mug", points_cost=300, stock=None)
    make_reward(name_en="Tote bag", points_cost=100, min_tier="silver")
    make_reward(name_en="Old", active=False)
    make_reward(name_en="Ended", ends_at=now - timedelta(days=1))
    make_reward(name_en="Later", starts_at=now + timedelta(days=1))
    rewards = api.get("/rewards", key).get_json()["rewards"]
    assert [(r["name_en"], r["points_cost"], r["stock"], r["min_tier"]) for r in rewards] == [
        ("Tote bag", 100, 5, "silver"),
        ("Mug", 300, None, None),
    ]


def test_a_redemption_issues_a_coupon_and_takes_the_points(api, key, member):
    """Does POST /redemptions answer 201 with a coupon code and the lower balance?"""
    api.post("/purchases", key, json=purchase(member, amount="500"))
    reward = make_reward(points_cost=120, stock=3)
    response = api.post("/redemptions", key, json={"member_no": member, "reward_id": reward.id})
    assert response.status_code == 201
    body = response.get_json()
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", body["coupon_code"])
    assert body | {"coupon_code": None} == {
        "coupon_code": None,
        "reward_id": reward.id,
        "points": 120,
        "member_no": member,
        "balance": 380,
        "tier": "member",
    }
    db.session.refresh(reward)
    assert reward.stock == 2


def test_redeeming_without_enough_points_is_a_conflict(api, key, member):
    """Is a redemption the balance cannot pay refused with 409, taking neither points nor stock?"""
    api.post("/purchases", key, json=purchase(member, amount="50"))
    reward = make_reward(points_cost=100, stock=3)
    response = api.post("/redemptions", key, json={"member_no": member, "reward_id": reward.id})
    assert_error(response, 409, "insufficient_points", "points")
    db.session.refresh(reward)
    assert reward.stock == 3
    assert db.session.scalar(sa.select(sa.func.count(Redemption.id))) == 0
    assert api.get(f"/customers/{member}/points", key).get_json()["balance"] == 50


def test_redeeming_a_reward_out_of_stock_is_a_conflict(api, key, member):
    """Is a redemption of a reward with no stock left refused with 409, taking no points?"""
    api.post("/purchases", key, json=purchase(member, amount="500"))
    reward = make_reward(points_cost=100, stock=0)
    response = api.post("/redemptions", key, json={"member_no": member, "reward_id": reward.id})
    assert_error(response, 409, "out_of_stock", "stock")
    assert api.get(f"/customers/{member}/points", key).get_json()["balance"] == 500


def test_redeeming_for_an_unknown_member_is_not_found(api, key):
    """Is a redemption for an unknown member number answered 404?"""
    reward = make_reward()
    response = api.post("/redemptions", key, json={"member_no": "M99999999", "reward_id": reward.id})
    assert_error(response, 404, "unknown_customer")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"reward_id": 999}, "reward"),
        ({"reward_id": "1"}, "reward_id"),
        ({"reward_id": 0}, "reward_id"),
        ({"reward_id": 2**31}, "reward_id"),
        ({"reward_id": True}, "reward_id"),
        ({"reward_id": MISSING}, "reward_id"),
        ({"member_no": MISSING}, "member_no"),
        ({"member_no": ""}, "member_no"),
    ],
    ids=case_id,
)
def test_an_invalid_redemption_is_refused_with_a_clear_message(api, key, member, body, mentions):
    """Is each malformed redemption a 422 JSON error naming the problem, taking nothing?"""
    make_reward()
    sent = {"member_no": member, "reward_id": 1} | body
    sent = {name: value for name, value in sent.items() if value is not MISSING}
    assert_error(api.post("/redemptions", key, json=sent), 422, mentions=mentions)
    assert db.session.scalar(sa.select(sa.func.count(Redemption.id))) == 0


def test_a_redemption_body_that_is_not_json_is_a_bad_request(api, key):
    """Is a redemption whose body is not JSON refused with 400?"""
    response = api.post("/redemptions", key, data="{", content_type="application/json")
    assert_error(response, 400, "bad_request", "JSON object")
