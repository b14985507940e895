"""What the balance API answers, from stored entries: pure (no I/O, no Faust).

processor.api decides who answers and when; this module only turns a
partition's stored bytes (processor.state's formats) into the JSON bodies,
with amounts as R21 prints them (strings with exactly 4 decimals: a JSON
number would be a float to most clients, and money is never a float here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ledger import Account, Deposit, DepositState
from ledger.amounts import format_amount
from ledger.parsing import MAX_CLIENT, MAX_TX
from processor.state import (
    account_key,
    decode_account,
    decode_deposit,
    decode_position,
    deposit_key_bytes,
    position_key,
)

__all__ = ["MAX_CLIENT", "MAX_TX", "account", "deposit", "parse_id", "position"]

#: Leading zeros are allowed (R4), but not unboundedly many.
_MAX_DIGITS = 20


def parse_id(raw: str, most: int) -> int | None:
    """An id as R4 writes it (`[0-9]+`, leading zeros allowed, no sign), or None."""
    if not raw or len(raw) > _MAX_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= most else None


class Deposits(Protocol):
    def get(self, key: bytes, default: bytes | None = None) -> bytes | None: ...


class PartitionView(Protocol):
    """A partition's state as stored: an owned store or a standby copy (state.store)."""

    @property
    def partition(self) -> int: ...
    @property
    def accounts(self) -> Mapping[bytes, bytes]: ...
    @property
    def deposits(self) -> Deposits: ...


def position(view: PartitionView) -> int:
    """The next input offset of the partition the state has not applied (0: none applied)."""
    raw = view.accounts.get(position_key(view.partition))
    return 0 if raw is None else decode_position(raw)


def account_fields(account: Account) -> dict[str, Any]:
    return {
        "available": format_amount(account.available),
        "held": format_amount(account.held),
        "total": format_amount(account.total),
        "locked": account.locked,
    }


def deposit_fields(deposit: Deposit) -> dict[str, Any]:
    return {
        "amount": format_amount(deposit.amount),
        "state": DepositState(deposit.state).name.lower(),
    }


def account(view: PartitionView, client: int) -> dict[str, Any] | None:
    """Client's account and the position it reflects; None: the partition has no such client."""
    raw = view.accounts.get(account_key(client))
    if raw is None:
        return None
    value = decode_account(raw).value
    assert isinstance(value, Account)
    return {"client": client, **account_fields(value)}


def deposit(view: PartitionView, client: int, tx: int) -> dict[str, Any] | None:
    """Client's deposit `tx` as stored; None: unknown, or forgotten after its account locked."""
    raw = view.deposits.get(deposit_key_bytes(client, tx))
    if raw is None:
        return None
    value = decode_deposit(raw).value
    assert isinstance(value, Deposit)
    return {"client": client, "tx": tx, **deposit_fields(value)}
