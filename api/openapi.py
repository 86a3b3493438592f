"""The OpenAPI 3 document of /api/v1, kept beside the code it describes (tests compare them)."""

from __future__ import annotations

from flask import request

from models.loyalty.purchases import PURCHASE_CHANNELS


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(
        _ref("Error"),
        "The body is not a JSON object: not valid UTF-8 or JSON, nested too deeply, or holding a lone "
        "surrogate (half of a UTF-16 pair).",
    ),
    "401": _json(_ref("Error"), "No valid API key."),
    "403": _json(_ref("Error"), "The key lacks the scope."),
    "404": _json(_ref("Error"), "Unknown customer or route."),
    "409": _json(_ref("Error"), "Conflict: not enough points, out of stock, or an order reference reused."),
    "413": _json(_ref("Error"), "The body is larger than 64 KiB."),
    "415": _json(_ref("Error"), "The body is not sent as application/json."),
    "422": _json(_ref("Error"), "A field is missing or invalid; the message says which."),
    "503": {
        **_json(_ref("Error"), 'The database stayed busy; nothing was stored. Retry (code "busy").'),
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
}


def _errors(*codes: str) -> dict:
    return {code: ERRORS[code] for code in codes}


SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "CustomerRef": {
        "type": "object",
        "description": "One of member_no, email or phone (exact match).",
        "properties": {
            "member_no": {"type": "string", "maxLength": 254, "example": "M00000042"},
            "email": {"type": "string", "maxLength": 254},
            "phone": {"type": "string", "maxLength": 254},
        },
    },
    "NewPurchase": {
        "type": "object",
        "required": ["customer", "order_ref", "amount", "currency"],
        "properties": {
            "customer": _ref("CustomerRef"),
            "order_ref": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "Unique per integration; posting it again changes nothing.",
            },
            "amount": {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$", "example": "128.50"},
            "currency": {"type": "string", "minLength": 3, "maxLength": 3, "example": "CNY"},
            "channel": {
                "type": ["string", "null"],
                "enum": [*PURCHASE_CHANNELS, None],
            },
            "purchased_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Purchase": {
        "type": "object",
        "required": [
            "order_ref",
            "source",
            "member_no",
            "amount",
            "currency",
            "channel",
            "purchased_at",
            "points",
            "status",
        ],
        "properties": {
            "order_ref": {"type": "string"},
            "source": {"type": "string"},
            "member_no": {"type": ["string", "null"]},
            "amount": {"type": "string"},
            "currency": {"type": "string"},
            "channel": {"type": "string"},
            "purchased_at": {"type": "string", "format": "date-time"},
            "points": {"type": "integer"},
            "status": {"type": "string", "enum": ["completed", "refunded"]},
        },
    },
    "PurchaseResult": {
        "type": "object",
        "required": ["purchase", "created", "balance", "tier"],
        "properties": {
            "purchase": _ref("Purchase"),
            "created": {"type": "boolean"},
            "balance": {"type": "integer", "minimum": 0},
            "tier": {"type": "string"},
        },
    },
    "Account": {
        "type": "object",
        "required": ["member_no", "balance", "tier"],
        "properties": {
            "member_no": {"type": ["string", "null"]},
            "balance": {"type": "integer", "minimum": 0},
            "tier": {"type": "string"},
        },
    },
    "Refund": {
        "allOf": [
            _ref("Account"),
            {"type": "object", "required": ["purchase"], "properties": {"purchase": _ref("Purchase")}},
        ],
    },
    "Points": {
        "allOf": [
            _ref("Account"),
            {
                "type": "object",
                "required": ["expiring", "ledger"],
                "properties": {
                    "expiring": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["expires_at", "points"],
                            "properties": {
                                "expires_at": {"type": "string", "format": "date-time"},
                                "points": {"type": "integer"},
                            },
                        },
                    },
                    "ledger": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["kind", "points", "balance_after", "reason", "reference", "at"],
                            "properties": {
                                "kind": {
                                    "type": "string",
                                    "enum": ["earn", "redeem", "adjust", "expire", "reverse"],
                                },
                                "points": {"type": "integer"},
                                "balance_after": {"type": "integer", "minimum": 0},
                                "reason": {"type": "string"},
                                "reference": {"type": ["string", "null"]},
                                "at": {"type": "string", "format": "date-time"},
                            },
                        },
                    },
                },
            },
        ],
    },
    "Reward": {
        "type": "object",
        "required": ["id", "name_en", "name_zh", "points_cost", "stock", "min_tier"],
        "properties": {
            "id": {"type": "integer"},
            "name_en": {"type": "string"},
            "name_zh": {"type": "string"},
            "points_cost": {"type": "integer", "minimum": 1},
            "stock": {"type": ["integer", "null"], "minimum": 0},
            "min_tier": {"type": ["string", "null"]},
        },
    },
    "NewRedemption": {
        "type": "object",
        "required": ["member_no", "reward_id"],
        "properties": {
            "member_no": {"type": "string", "minLength": 1, "maxLength": 64},
            "reward_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
        },
    },
    "RedemptionResult": {
        "allOf": [
            _ref("Account"),
            {
                "type": "object",
                "required": ["coupon_code", "reward_id", "points"],
                "properties": {
                    "coupon_code": {"type": "string"},
                    "reward_id": {"type": "integer"},
                    "points": {"type": "integer"},
                },
            },
        ],
    },
}

PATHS = {
    "/ping": {
        "get": {
            "operationId": "ping",
            "summary": "Check that the key works (no scope needed).",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["ok", "key"],
                        "properties": {"ok": {"type": "boolean"}, "key": {"type": "string"}},
                    },
                    "The key is valid.",
                ),
                **_errors("401"),
            },
        }
    },
    "/purchases": {
        "post": {
            "operationId": "postPurchase",
            "summary": "Record a purchase and earn its points (idempotent).",
            "x-scope": "purchases:write",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("NewPurchase")}},
            },
            "responses": {
                "201": _json(_ref("PurchaseResult"), "Recorded."),
                "200": _json(_ref("PurchaseResult"), "Already recorded: the first result."),
                **_errors("400", "401", "403", "404", "409", "413", "415", "422", "503"),
            },
        }
    },
    "/purchases/{order_ref}/refund": {
        "post": {
            "operationId": "refundPurchase",
            "summary": "Refund a purchase; its points are reversed (idempotent).",
            "x-scope": "purchases:write",
            "parameters": [
                {
                    "name": "order_ref",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                }
            ],
            "responses": {
                "200": _json(_ref("Refund"), "Refunded."),
                **_errors("401", "403", "404", "422", "503"),
            },
        }
    },
    "/customers/{member_no}/points": {
        "get": {
            "operationId": "getPoints",
            "summary": "A customer's balance, tier, expiring points and recent ledger.",
            "x-scope": "points:read",
            "parameters": [
                {
                    "name": "member_no",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                }
            ],
            "responses": {"200": _json(_ref("Points"), "The account."), **_errors("401", "403", "404")},
        }
    },
    "/rewards": {
        "get": {
            "operationId": "listRewards",
            "summary": "Rewards available now.",
            "x-scope": "points:read",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["rewards"],
                        "properties": {"rewards": {"type": "array", "items": _ref("Reward")}},
                    },
                    "The catalogue.",
                ),
                **_errors("401", "403"),
            },
        }
    },
    "/redemptions": {
        "post": {
            "operationId": "postRedemption",
            "summary": "Redeem points for a reward and get a coupon code.",
            "x-scope": "redemptions:write",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("NewRedemption")}},
            },
            "responses": {
                "201": _json(_ref("RedemptionResult"), "Redeemed."),
                **_errors("400", "401", "403", "404", "409", "413", "415", "422", "503"),
            },
        }
    },
}


def openapi_document() -> dict:
    """The document, with the server URL of the request that asks for it."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Patron loyalty API",
            "version": "1.0.0",
            "description": (
                "Post purchases and refunds, read balances and redeem rewards. Authenticate with "
                "`Authorization: Bearer <key>`; admins create keys in Patron (Settings → API keys), "
                'each with scopes. Errors are JSON: {"error": {"code", "message"}}.'
            ),
        },
        "servers": [{"url": request.url_root.rstrip("/") + "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": PATHS,
    }
