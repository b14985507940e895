"""How accounts and deposits are stored in the tables and their changelogs.

Keys are ASCII (`b"17"` for client 17, `b"17:42"` for its deposit tx 42) and
values are small orjson arrays, so any Kafka tool can read a changelog:

    account  [available, held, locked, offset, before]
    deposit  [amount, state, offset, before]

and, once per partition p, in the accounts table and changelog only:

    b"#position:<p>"  {"next_offset": n}

the next offset of input partition p that the partition's state has not
applied: every event of p below n is in the state, none at or after it. It
is written in the same transaction as the batch's other records, last
(processor.writer). Client keys are digits, so no client can collide with it.

`offset` is the source offset (in the client's `transactions` partition) of the
last event that changed the entry, and `before` is the entry as it was when
the batch that wrote it began ([available, held, locked] / [amount, state], or
null if it did not exist). docs/exactness.md explains why both are kept.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from ledger import Account, Deposit, DepositState

#: Offset recorded for entries that predate any event (never happens in practice).
NO_OFFSET = -1


class Stored(NamedTuple):
    """A decoded table entry: the value, the offset that wrote it, the value before its batch."""

    value: Account | Deposit | None
    offset: int
    before: Account | Deposit | None


def account_key(client: int) -> bytes:
    return b"%d" % client


def deposit_key_bytes(client: int, tx: int) -> bytes:
    return b"%d:%d" % (client, tx)


#: First byte of the position keys; never the first byte of a client key (digits).
POSITION_PREFIX = b"#position:"


def position_key(partition: int) -> bytes:
    return b"#position:%d" % partition


def is_position_key(key: bytes) -> bool:
    return key.startswith(POSITION_PREFIX)


def encode_position(next_offset: int) -> bytes:
    return b'{"next_offset":%d}' % next_offset


def decode_position(raw: bytes) -> int:
    value = orjson.loads(raw)["next_offset"]
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"bad position record {raw[:64]!r}")
    return value


def client_of(key: bytes) -> int:
    return int(key.split(b":", 1)[0])


def encode_account(account: Account, offset: int, before: Account | None) -> bytes:
    return orjson.dumps(
        [
            account.available,
            account.held,
            account.locked,
            offset,
            None if before is None else [before.available, before.held, before.locked],
        ]
    )


def decode_account(raw: bytes) -> Stored:
    available, held, locked, offset, before = orjson.loads(raw)
    return Stored(
        Account(available, held, locked),
        offset,
        None if before is None else Account(before[0], before[1], before[2]),
    )


def encode_deposit(deposit: Deposit, offset: int, before: Deposit | None) -> bytes:
    # The bytes orjson.dumps gives for the same array, formatted directly:
    # orjson starts every output in a 1 KiB buffer from the system allocator,
    # and at one call per new deposit that measured ~3.5 us per call inside a
    # busy worker (0.2 us in isolation); this stays in Python's small-object
    # allocator. tests/unit/test_state.py holds the two to the same bytes.
    if before is None:
        return b"[%d,%d,%d,null]" % (deposit.amount, deposit.state, offset)
    return b"[%d,%d,%d,[%d,%d]]" % (
        deposit.amount,
        deposit.state,
        offset,
        before.amount,
        before.state,
    )


def decode_deposit(raw: bytes) -> Stored:
    amount, state, offset, before = orjson.loads(raw)
    return Stored(
        Deposit(amount, DepositState(state)),
        offset,
        None if before is None else Deposit(before[0], DepositState(before[1])),
    )
