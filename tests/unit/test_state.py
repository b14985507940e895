"""Table entries as bytes: the encodings are orjson arrays any Kafka tool can read."""

from __future__ import annotations

import random

import orjson
import pytest

from ledger import Account, Deposit
from ledger.model import DepositState
from processor.state import (
    account_key,
    decode_account,
    decode_deposit,
    decode_position,
    deposit_key_bytes,
    encode_account,
    encode_deposit,
    encode_position,
    is_position_key,
    position_key,
)


def _deposit(rng: random.Random) -> Deposit:
    return Deposit(rng.randint(1, 922_337_203_685_477_5807), rng.choice(list(DepositState)))


def test_a_deposit_entry_is_the_orjson_array_and_decodes_back() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        deposit, offset = _deposit(rng), rng.randint(-1, 10**12)
        before = _deposit(rng) if rng.random() < 0.5 else None
        raw = encode_deposit(deposit, offset, before)
        expected = [
            deposit.amount,
            int(deposit.state),
            offset,
            None if before is None else [before.amount, int(before.state)],
        ]
        assert raw == orjson.dumps(expected)
        stored = decode_deposit(raw)
        assert (stored.value, stored.offset, stored.before) == (deposit, offset, before)


def test_an_account_entry_decodes_back() -> None:
    rng = random.Random(6)
    for _ in range(2_000):
        account = Account(
            rng.randint(-(10**15), 10**15), rng.randint(0, 10**15), rng.random() < 0.5
        )
        before = Account(rng.randint(0, 10**9), 0, False) if rng.random() < 0.5 else None
        stored = decode_account(encode_account(account, 42, before))
        assert (stored.value, stored.offset, stored.before) == (account, 42, before)


def test_a_position_record_round_trips_and_never_looks_like_a_client_key() -> None:
    for partition, next_offset in [(0, 0), (7, 12_345_678_901)]:
        key = position_key(partition)
        assert is_position_key(key)
        assert decode_position(encode_position(next_offset)) == next_offset
        assert orjson.loads(encode_position(next_offset)) == {"next_offset": next_offset}
    assert not is_position_key(account_key(17))
    assert not is_position_key(deposit_key_bytes(17, 42))
    with pytest.raises(ValueError):
        decode_position(b'{"next_offset": -1}')
