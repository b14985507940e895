"""Message values (R3-R6 for decoded JSON): the one-pass check agrees with the strict one."""

from __future__ import annotations

import random
import re
from typing import Any

import orjson
import pytest

from ledger.errors import MalformedRow
from ledger.messages import _checked_row, row_from_message, strict_value, to_message
from ledger.model import TxKind

_FIELD_VALUES: list[Any] = [
    0,
    1,
    7,
    65_535,
    65_536,
    -1,
    4_294_967_295,
    4_294_967_296,
    10**20,
    1.0,
    1.5,
    True,
    False,
    None,
    "1",
    [1],
    {"a": 1},
    922_337_203_685_477_5807,
    922_337_203_685_477_5808,
]
_TYPES: list[Any] = [*(k.value for k in TxKind), "DEPOSIT", "transfer", 1, None, ["deposit"]]


def _outcome(check: Any, message: object) -> object:
    try:
        return check(message)
    except MalformedRow as exc:
        return ("malformed", exc.detail)


def test_a_well_formed_message_round_trips_through_to_message() -> None:  # R3-R6
    message = to_message(TxKind.DEPOSIT, 3, 9, 15_000, 2)
    assert row_from_message(message) == (TxKind.DEPOSIT, 3, 9, 15_000)
    message = to_message(TxKind.DISPUTE, 3, 9, 0, 4)
    assert row_from_message(message) == (TxKind.DISPUTE, 3, 9, 0)


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_check_gives_the_strict_checks_answer_and_wording(seed: int) -> None:  # R3-R6
    rng = random.Random(seed)
    for _ in range(20_000):
        message: dict[str, Any] = {}
        for field, values in (
            ("type", _TYPES),
            ("client", _FIELD_VALUES),
            ("tx", _FIELD_VALUES),
            ("amount", _FIELD_VALUES),
        ):
            if rng.random() < 0.9:
                message[field] = rng.choice(values)
        assert _outcome(row_from_message, message) == _outcome(_checked_row, message), message
    for odd in ([], "deposit", 5, None):
        assert _outcome(row_from_message, odd) == _outcome(_checked_row, odd)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"type":"deposit","client":1,"tx":2,"amount":3,"amount":4}', "duplicate field"),
        (b'{"type":"deposit","type":"deposit","client":1,"tx":2,"amount":3}', "duplicate field"),
        (b'{"type":"deposit","client":1,"tx":2,"amount":3,"x":0}', "unknown field(s) 'x'"),
        (b'{"type":"deposit","client":1,"tx":2,"amount":3,"line":"7"}', "line must be"),
        (b'{"type":"deposit","client":1,"tx":2,"amount":3,"line":[7]}', "line must be"),
    ],
)
def test_what_a_json_decoder_hides_is_refused(raw: bytes, says: str) -> None:  # issue 14
    message = orjson.loads(raw)
    row_from_message(message)  # valid-looking once decoded
    with pytest.raises(MalformedRow, match=re.escape(says)):
        strict_value(raw, message)


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(to_message(TxKind.DEPOSIT, 1, 2, 3, 4)),
        orjson.dumps(to_message(TxKind.DISPUTE, 1, 2, 0, 4)),
        b'{ "type" : "withdrawal", "client" : 1, "tx" : 2, "amount" : 3 }',
    ],
)
def test_well_formed_messages_pass_the_strict_check(raw: bytes) -> None:
    strict_value(raw, orjson.loads(raw))


def test_a_detail_never_quotes_more_than_a_few_dozen_characters_of_a_value() -> None:
    with pytest.raises(MalformedRow) as refused:
        row_from_message({"type": "deposit", "client": 1, "tx": 2, "amount": "9" * 100_000})
    assert len(refused.value.detail) < 100
    with pytest.raises(MalformedRow) as refused:
        row_from_message({"type": "x\n" * 1000, "client": 1, "tx": 2})
    assert len(refused.value.detail) < 100 and "\n" not in refused.value.detail
