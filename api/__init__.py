"""The JSON API for shops and POS systems (/api/v1): purchases, refunds, balances, redemptions."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps

import sqlalchemy as sa
from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import NotFound

from api.openapi import openapi_document
from models import db, utcnow
from models.api_key import find_api_key
from models.customer import Customer, find_customer
from models.loyalty.ledger import account_state, expiring_points, recent_ledger
from models.loyalty.programme import LoyaltyError, UnknownCustomer
from models.loyalty.purchases import NewPurchase, Purchase, member_no_of, record_purchase, refund_purchase
from models.loyalty.rewards import available_rewards, redeem
from models.uow import Actor, UnitOfWork, WriteBusy, unit_of_work

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.url_value_preprocessor
def _no_nul_in_paths(_endpoint, values):
    """PostgreSQL cannot compare text holding NUL: such a path names nothing."""
    if values and any("\x00" in str(v) for v in values.values()):
        raise NotFound()


AMOUNT = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2})?")
# A request body is a small, flat JSON object: these bounds are far above any real one.
MAX_BODY_BYTES = 64 * 1024
MAX_NESTING = 16
TOO_DEEP = f"The body must be a JSON object nested at most {MAX_NESTING} levels deep."
# Half of a UTF-16 surrogate pair on its own ("\ud800" in JSON): no UTF-8 text, so no database, holds it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(LoyaltyError):
    code, status = "bad_request", 400


class UnsupportedBody(LoyaltyError):
    code, status = "unsupported_media_type", 415


@bp.before_request
def _bounded_body() -> None:
    """A body larger than any real request is refused (413) before it is read."""
    request.max_content_length = MAX_BODY_BYTES


def error(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.errorhandler(LoyaltyError)
def _loyalty_error(exc: LoyaltyError):
    return error(exc.status, exc.code, str(exc))


@bp.errorhandler(WriteBusy)
def _busy(_exc: WriteBusy):
    response, status = error(
        503, "busy", "The database was busy; your change was not saved. Please try again."
    )
    response.headers["Retry-After"] = "1"
    return response, status


def write() -> AbstractContextManager[UnitOfWork]:
    """The unit of work of one API write, on behalf of the request's key.

    It keeps the committed objects loaded: the answer is built from them without reading again.
    """
    return unit_of_work(Actor.api_key(g.api_key, request.remote_addr), keep_state=True)


def require(scope: str | None):
    """The request must carry an active API key (Authorization: Bearer …) holding `scope`."""

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            key = find_api_key(token or request.headers.get("X-API-Key", ""))
            if key is None:
                return error(
                    401, "unauthorized", "A valid API key is required (Authorization: Bearer <key>)."
                )
            if scope and scope not in key.scope_set:
                return error(403, "forbidden", f"This key lacks the scope {scope}.")
            g.api_key = key
            return view(*args, **kwargs)

        return wrapped

    return decorate


def body() -> dict:
    """The request's JSON object; anything else is refused with a message saying what is wrong."""
    if not request.is_json:
        raise UnsupportedBody("The body must be a JSON object sent with Content-Type: application/json.")
    try:
        document = request.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body must be a JSON object in UTF-8; it is not valid UTF-8.") from None
    try:
        data = json.loads(document, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The body must be a JSON object; it is not valid JSON ({exc.msg}: line {exc.lineno}, "
            f"column {exc.colno})."
        ) from None
    except ValueError:  # a number of thousands of digits, NaN or Infinity
        raise BadRequest("The body must be a JSON object; it holds a number JSON does not allow.") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    _check_plain(data)
    return data


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _check_plain(data: dict) -> None:
    """Refuse a body nested too deeply or holding text that no database can store."""
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_NESTING:
            raise BadRequest(TOO_DEEP)
        if isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and LONE_SURROGATE.search(value):
            raise BadRequest(
                "The body must be a JSON object of Unicode text; it holds a lone surrogate "
                "(half of a UTF-16 pair, such as \\ud800)."
            )


def optional_text(data: dict, name: str, max_length: int = 64) -> str | None:
    """A text field that may be left out or null; checked like `text` when given."""
    return None if data.get(name) is None else text(data, name, max_length)


def text(data: dict, name: str, max_length: int = 64) -> str:
    """A required text field: a non-empty string of at most `max_length` characters, trimmed."""
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
        raise LoyaltyError(f"{name} must be a non-empty string of at most {max_length} characters.")
    return value.strip()


def amount_of(data: dict) -> Decimal:
    raw = data.get("amount")
    if not isinstance(raw, str) or not AMOUNT.fullmatch(raw):
        raise LoyaltyError('amount must be a decimal string such as "128.50" (at most two decimals).')
    value = Decimal(raw)
    if value <= 0:
        raise LoyaltyError("amount must be positive.")
    return value


def moment(data: dict, name: str) -> datetime | None:
    raw = data.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise LoyaltyError(f"{name} must be an ISO 8601 date-time with a zone.") from None
    if value.tzinfo is None:
        raise LoyaltyError(f"{name} must include a time zone, e.g. 2026-11-22T10:00:00+08:00.")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+08:00 and the like fall outside datetime's range
        raise LoyaltyError(f"{name} is out of range.") from None
    return value  # a time in the future is refused by the purchase rules


def customer_from(data: dict) -> tuple[int, str | None]:
    who = data.get("customer")
    if not isinstance(who, dict):
        raise LoyaltyError("customer must be an object with member_no, email or phone.")
    for field in ("member_no", "email", "phone"):
        value = who.get(field)
        if isinstance(value, str) and value.strip() and len(value) <= 254 and "\x00" not in value:
            found = find_customer(value)
            if found is None:
                raise UnknownCustomer("No customer matches.")
            return found
    raise LoyaltyError("customer must name a member_no, email or phone.")


def customer_by_member_no(member_no: str) -> tuple[int, str | None]:
    """(id, member number) of a customer, without loading (and decrypting) the whole record."""
    row = db.session.execute(
        sa.select(Customer.id, Customer.member_no).where(Customer.member_no == member_no)
    ).first()
    if row is None:
        raise UnknownCustomer("No customer with that member number.")
    return row[0], row[1]


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def purchase_json(purchase: Purchase, member_no: str | None) -> dict:
    return {
        "order_ref": purchase.order_ref,
        "source": purchase.source,
        "member_no": member_no,
        "amount": str(purchase.amount),
        "currency": purchase.currency,
        "channel": purchase.channel,
        "purchased_at": iso(purchase.purchased_at),
        "points": purchase.points,
        "status": purchase.status,
    }


def account_json(customer_id: int, member_no: str | None) -> dict:
    balance, tier = account_state(customer_id)
    return {"member_no": member_no, "balance": balance, "tier": tier}


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/ping")
@require(None)
def ping():
    return jsonify({"ok": True, "key": g.api_key.name})


@bp.post("/purchases")
@require("purchases:write")
def post_purchase():
    data = body()
    channel = optional_text(data, "channel", max_length=16) or "store"
    customer_id, member_no = customer_from(data)
    spec = NewPurchase(
        customer_id=customer_id,
        member_no=member_no,
        source=g.api_key.source,
        order_ref=text(data, "order_ref"),
        amount=amount_of(data),
        currency=text(data, "currency", max_length=3).upper(),
        channel=channel,
        purchased_at=moment(data, "purchased_at"),
    )
    with write():
        result = record_purchase(spec)
    payload = {
        "purchase": purchase_json(result.purchase, result.member_no),
        "created": result.created,
        "balance": result.balance,
        "tier": result.tier,
    }
    return jsonify(payload), 201 if result.created else 200


@bp.post("/purchases/<path:order_ref>/refund")
@require("purchases:write")
def refund(order_ref: str):
    source = g.api_key.source  # read before the unit of work ends the read transaction
    with write():
        purchase = refund_purchase(source, order_ref)
    member_no = member_no_of(purchase.customer_id)
    return jsonify(
        {"purchase": purchase_json(purchase, member_no), **account_json(purchase.customer_id, member_no)}
    )


@bp.get("/customers/<member_no>/points")
@require("points:read")
def points(member_no: str):
    customer_id, stored_member_no = customer_by_member_no(member_no)
    ledger = [
        {
            "kind": e.kind,
            "points": e.points,
            "balance_after": e.balance_after,
            "reason": e.reason,
            "reference": e.reference,
            "at": iso(e.created_at),
        }
        for e in recent_ledger(customer_id)
    ]
    expiring = [
        {"expires_at": iso(line.expires_at), "points": line.points} for line in expiring_points(customer_id)
    ]
    account = account_json(customer_id, stored_member_no)
    return jsonify({**account, "expiring": expiring, "ledger": ledger})


@bp.get("/rewards")
@require("points:read")
def rewards():
    available = available_rewards(utcnow())
    return jsonify(
        {
            "rewards": [
                {
                    "id": r.id,
                    "name_en": r.name_en,
                    "name_zh": r.name_zh,
                    "points_cost": r.points_cost,
                    "stock": r.stock,
                    "min_tier": r.min_tier,
                }
                for r in available
            ]
        }
    )


@bp.post("/redemptions")
@require("redemptions:write")
def post_redemption():
    data = body()
    customer_id, member_no = customer_by_member_no(text(data, "member_no"))
    reward_id = data.get("reward_id")
    if isinstance(reward_id, bool) or not isinstance(reward_id, int) or not 0 < reward_id < 2**31:
        raise LoyaltyError("reward_id must be a positive integer.")
    with write():
        result = redeem(customer_id, reward_id)
    return jsonify(
        {
            "coupon_code": result.redemption.coupon_code,
            "reward_id": reward_id,
            "points": result.redemption.points,
            "member_no": member_no,
            "balance": result.balance,
            "tier": result.tier,
        }
    ), 201
