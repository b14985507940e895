"""Amounts: exact fixed point, 4 decimals (R5, R8, R21)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import MAX_UNITS, MalformedRow, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "units"),
    [
        (b"1", 10_000),
        (b"1.5", 15_000),
        (b".5", 5_000),
        (b"1.", 10_000),
        (b"0.0001", 1),
        (b"12.3400", 123_400),
        (b"007.25", 72_500),
        (b"0", 0),  # parses; "> 0" is a rule of deposit/withdrawal rows, not of amounts
        (b"922337203685477.5807", MAX_UNITS),
        (b"0" * 5000 + b"1", 10_000),  # leading zeros are allowed, however many
    ],
)
def test_valid_amounts_parse_to_exact_units(text: bytes, units: int) -> None:  # R5, R8
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    "text",
    [
        b"1.00001",
        b"-1",
        b"+1",
        b"1e3",
        b"",
        b".",
        b"1.2.3",
        b"1,5",
        b"1 0",
        b"1_000",
        b"\xd9\xa1",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not to SPEC
        b"922337203685477.5808",
        b"9" * 5000,
        b"NaN",
        b"inf",
        b"0x10",
    ],
)
def test_amounts_outside_the_grammar_or_range_are_malformed(text: bytes) -> None:  # R5
    with pytest.raises(MalformedRow):
        parse_amount(text)


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (0, "0.0000"),
        (5_000, "0.5000"),
        (-5_000, "-0.5000"),
        (120_000, "12.0000"),
        (1, "0.0001"),
        (-MAX_UNITS, "-922337203685477.5807"),
    ],
)
def test_amounts_print_with_exactly_four_decimals(units: int, text: str) -> None:  # R21
    assert format_amount(units) == text


@given(st.integers(min_value=0, max_value=MAX_UNITS))
def test_parse_of_format_is_identity(units: int) -> None:  # R8, R21
    assert parse_amount(format_amount(units).encode()) == units
