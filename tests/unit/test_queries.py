"""The balance API's bodies from stored bytes (processor.queries): what a caller reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ledger import Account, Deposit, DepositState
from processor import queries
from processor.state import (
    account_key,
    deposit_key_bytes,
    encode_account,
    encode_deposit,
    encode_position,
    position_key,
)


@dataclass
class View:
    partition: int = 3
    accounts: dict[bytes, bytes] = field(default_factory=dict)
    deposits: dict[bytes, bytes] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("raw", "most", "expected"),
    [
        ("7", 65_535, 7),
        ("007", 65_535, 7),  # R4: leading zeros allowed
        ("0", 65_535, 0),
        ("65535", 65_535, 65_535),
        ("65536", 65_535, None),  # R4: out of range
        ("4294967295", 4_294_967_295, 4_294_967_295),
        ("-1", 65_535, None),  # R4: no sign
        ("+1", 65_535, None),
        (" 1", 65_535, None),
        ("1.0", 65_535, None),
        ("", 65_535, None),
        ("٣", 65_535, None),  # a digit to str.isdigit, not to R4
        ("0" * 21 + "1", 65_535, None),  # bounded work for any input
    ],
)
def test_ids_are_read_as_r4_writes_them(raw: str, most: int, expected: int | None) -> None:
    assert queries.parse_id(raw, most) == expected


def test_an_account_shows_r21_amounts_as_strings_and_the_total_is_derived() -> None:  # R11, R21
    view = View()
    view.accounts[account_key(7)] = encode_account(Account(15_000, -5_000, True), 12, None)
    view.accounts[position_key(3)] = encode_position(40)
    assert queries.account(view, 7) == {
        "client": 7,
        "available": "1.5000",
        "held": "-0.5000",
        "total": "1.0000",
        "locked": True,
    }
    assert queries.position(view) == 40


def test_an_unknown_client_is_none_and_a_partition_with_nothing_applied_is_at_zero() -> None:
    view = View()
    assert queries.account(view, 7) is None
    assert queries.position(view) == 0


def test_a_deposit_shows_its_amount_and_its_dispute_state_by_name() -> None:
    view = View()
    view.deposits[deposit_key_bytes(7, 42)] = encode_deposit(
        Deposit(25_000, DepositState.CHARGED_BACK), 9, None
    )
    assert queries.deposit(view, 7, 42) == {
        "client": 7,
        "tx": 42,
        "amount": "2.5000",
        "state": "charged_back",
    }
    assert queries.deposit(view, 8, 42) is None  # deposits are the client's own (R12)
