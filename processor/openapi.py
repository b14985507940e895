"""The balance API's OpenAPI 3.1 document, served by every worker at `/openapi.json`.

Kept beside processor.api and checked against it by the tests (the
document validates, and real answers validate against its schemas).
"""

from __future__ import annotations

from typing import Any

_AMOUNT = {
    "type": "string",
    "pattern": r"^-?[0-9]+\.[0-9]{4}$",
    "description": "Exactly 4 decimals (SPEC R21); a string, never a float.",
    "examples": ["1.5000"],
}
_WHERE = {
    "partition": {"type": "integer", "description": "The client's input partition (SPEC M1)."},
    "position": {
        "type": "integer",
        "description": "The answer reflects every event of the partition below this offset, "
        "and none at or after it (for a stale answer: at least these).",
    },
    "stale": {
        "type": "boolean",
        "description": "true: read from a standby copy (?stale=ok), possibly behind.",
    },
    "served_by": {"type": "string", "description": "The URL of the worker that read its state."},
    "lag_records": {
        "type": ["integer", "null"],
        "description": "Stale answers only: changelog records the standby copy had not read.",
    },
}
_REQUIRED_WHERE = ["partition", "position", "stale", "served_by"]


def _id(name: str, most: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"Plain digits, 0..{most} (SPEC R4; leading zeros allowed).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }


_STALE = {
    "name": "stale",
    "in": "query",
    "required": False,
    "description": "`ok`: a worker holding a standby copy may answer from it, marked stale, "
    "instead of forwarding (stays available while the owner restores).",
    "schema": {"type": "string", "enum": ["ok"]},
}


def _responses(ok: str) -> dict[str, Any]:
    def ref(name: str) -> dict[str, Any]:
        return {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        }

    return {
        "200": {"description": "Found.", **ref(ok)},
        "400": {"description": "An id is not plain digits in range.", **ref("Error")},
        "401": {
            "description": "LEDGER_API_TOKEN is set and the bearer token is missing or wrong.",
            **ref("Error"),
        },
        "404": {"description": "Not in the partition's state as of `position`.", **ref("Missing")},
        "503": {
            "description": "Not now: the partition is being reassigned or restored, or its owner "
            "did not answer. Ask again after Retry-After seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            **ref("NotNow"),
        },
    }


def document(server: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ledger balance API",
            "version": "1",
            "description": "Balances and deposits as the ledger's workers hold them. Any worker "
            "answers for any client: the owner of the client's partition serves it, others "
            "forward to it. Answers are exact as of `position`, or 503.",
        },
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Account": {
                    "type": "object",
                    "required": [
                        "client",
                        "available",
                        "held",
                        "total",
                        "locked",
                        *_REQUIRED_WHERE,
                    ],
                    "properties": {
                        "client": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "available": _AMOUNT,
                        "held": _AMOUNT,
                        "total": _AMOUNT,
                        "locked": {"type": "boolean"},
                        **_WHERE,
                    },
                },
                "Deposit": {
                    "type": "object",
                    "required": ["client", "tx", "amount", "state", *_REQUIRED_WHERE],
                    "properties": {
                        "client": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "tx": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                        "amount": _AMOUNT,
                        "state": {
                            "type": "string",
                            "enum": ["undisputed", "disputed", "charged_back"],
                        },
                        **_WHERE,
                    },
                },
                "Missing": {
                    "type": "object",
                    "required": ["error", *_REQUIRED_WHERE],
                    "properties": {"error": {"type": "string"}, **_WHERE},
                },
                "NotNow": {
                    "type": "object",
                    "required": ["error", "reason", "partition"],
                    "properties": {
                        "error": {"const": "not now"},
                        "reason": {"type": "string"},
                        "partition": {"type": "integer"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            },
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/accounts/{client}": {
                "get": {
                    "operationId": "getAccount",
                    "summary": "A client's balances (SPEC R11, R21)",
                    "parameters": [_id("client", 65535), _STALE],
                    "responses": _responses("Account"),
                }
            },
            "/accounts/{client}/deposits/{tx}": {
                "get": {
                    "operationId": "getDeposit",
                    "summary": "One of a client's deposits: amount and dispute state",
                    "parameters": [_id("client", 65535), _id("tx", 4294967295), _STALE],
                    "responses": _responses("Deposit"),
                }
            },
        },
    }
