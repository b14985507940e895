"""The balance API's OpenAPI document (processor.openapi) is valid, and says what the API does."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from processor.openapi import document


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(document("http://x")["components"]["schemas"][name])


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document("http://127.0.0.1:6066"))  # raises on any error


def test_amounts_are_strings_with_four_decimals_never_numbers() -> None:  # R21
    body: dict[str, Any] = {
        "client": 7, "available": "800.0000", "held": "0.0000", "total": "800.0000",
        "locked": False, "partition": 3, "position": 12, "stale": False, "served_by": "http://x",
    }  # fmt: skip
    assert not list(schema("Account").iter_errors(body))
    for bad in (800.0, "800.00", "800", "8e2"):
        assert list(schema("Account").iter_errors({**body, "available": bad})), bad
    assert list(schema("Account").iter_errors({**body, "client": 65_536}))  # R4


def test_every_route_says_how_it_answers_not_now() -> None:
    for path in document("http://x")["paths"].values():
        responses = path["get"]["responses"]
        assert {"200", "400", "404", "503"} <= set(responses)
        assert "Retry-After" in responses["503"]["headers"]
