"""Transactions as Kafka message values: the same rules R3-R6, for decoded JSON.

A message value is a JSON object with the amount already in integer units,
so no float ever carries money between processes:

    {"type": "deposit", "client": 1, "tx": 7, "amount": 15000, "line": 2}

`amount` is present only for deposits and withdrawals; `line` is the source
CSV line, kept for reports. Decoding bytes is the adapter's job; this module
checks what decoding produced, and (`strict_value`) the few things decoding
hides: a JSON parser keeps the last of duplicate keys and any unknown
field, so `{"amount": 1, "amount": 900000}` or a misspelt `"ammount"` would
otherwise be applied as something its writer did not mean.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.amounts import MAX_UNITS
from ledger.errors import MalformedRow
from ledger.model import AMOUNT_KINDS, TxKind
from ledger.parsing import MAX_CLIENT, MAX_TX, Row

_KINDS = {kind.value: kind for kind in TxKind}
#: Every field a message may have (`to_message` writes no other).
FIELDS = frozenset({"type", "client", "tx", "amount", "line"})
#: Characters of a bad value shown in a detail: details go into DLQ headers
#: and log lines, which must stay small whatever the value was.
SHOWN = 40


def to_message(kind: TxKind, client: int, tx: int, amount: int, line: int) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind.value, "client": client, "tx": tx}
    if kind in AMOUNT_KINDS:
        message["amount"] = amount
    message["line"] = line
    return message


def row_from_message(message: object) -> Row:
    """Check a decoded message value; raise MalformedRow if it is not a valid transaction."""
    # The common case in one pass (the worker calls this for every event);
    # anything off it goes to the strict checks below, which word the error.
    if type(message) is dict:
        name = message.get("type")
        kind = _KINDS.get(name) if type(name) is str else None
        client = message.get("client")
        tx = message.get("tx")
        if (
            kind is not None
            and type(client) is int
            and type(tx) is int
            and 0 <= client <= MAX_CLIENT
            and 0 <= tx <= MAX_TX
        ):
            if kind not in AMOUNT_KINDS:
                return kind, client, tx, 0
            amount = message.get("amount")
            if type(amount) is int and 1 <= amount <= MAX_UNITS:
                return kind, client, tx, amount
    return _checked_row(message)


def strict_value(raw: bytes, message: dict[str, Any]) -> None:
    """Refuse what a decoded, valid-looking message hides; raise MalformedRow.

    Exact, and slow (the standard library's decoder, every pair kept): the
    worker calls it only when a cheap test on `raw` and `message` (field
    counts, quote characters: processor.batch) says the value may hide
    something. That test passes only values this one accepts.
    """
    unknown = message.keys() - FIELDS
    if unknown:
        shown = sorted(_show(name) for name in unknown)[:3]
        raise MalformedRow(f"unknown field(s) {', '.join(shown)}")
    line = message.get("line")
    if line is not None and type(line) is not int:
        raise MalformedRow(f"line must be an integer, got {_show(line)}")
    pairs = json.loads(raw, object_pairs_hook=lambda pairs: pairs)
    if len(pairs) != len(message):
        raise MalformedRow("duplicate field names")


def _show(value: object) -> str:
    """A bounded, escaped rendering of a bad value (repr escapes control characters)."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _checked_row(message: object) -> Row:
    if not isinstance(message, dict):
        raise MalformedRow("value is not a JSON object")
    name = message.get("type")
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise MalformedRow(f"unknown type {_show(name)}")
    client = _bounded(message, "client", 0, MAX_CLIENT)
    tx = _bounded(message, "tx", 0, MAX_TX)
    amount = _bounded(message, "amount", 1, MAX_UNITS) if kind in AMOUNT_KINDS else 0
    return kind, client, tx, amount


def _bounded(message: dict[Any, Any], field: str, low: int, high: int) -> int:
    value = message.get(field)
    # `type(...) is int` on purpose: bools are ints to isinstance, and a float
    # amount (1.5) must be refused, not truncated.
    if type(value) is not int or not low <= value <= high:
        raise MalformedRow(f"{field} must be an integer in {low}..{high}, got {_show(value)}")
    return value
