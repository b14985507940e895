"""Applying a batch of `transactions` records: decode -> ledger core -> table writes.

Pure apart from the stores it reads: no Faust, no network, so the same code is
tested against plain dicts and run by the worker against Faust tables.
Skip-versus-crash is decided here and only here: a record that cannot be
decoded, or breaks R3-R6, is *skipped* to the dead-letter list; a record the
rules refuse is *applied as a rejection* (R10, R19). Anything else raises and
stops the worker, because continuing past an unexplained error could lose or
double-apply a transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ledger import Account, Deposit, Ledger, MalformedRow, Reason
from ledger.messages import row_from_message
from processor.state import (
    account_key,
    decode_account,
    decode_deposit,
    deposit_key_bytes,
    encode_account,
    encode_deposit,
)
from processor.views import TableView


class Record(NamedTuple):
    """One consumed record, as the worker hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Outcome:
    """What applying a batch produced; the worker turns it into sends and metrics."""

    #: (partition, key, value) to store and send to the changelog, one per touched key.
    account_writes: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    deposit_writes: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    #: Per partition, the offset of the last record applied.
    last_offsets: dict[int, int] = field(default_factory=dict)
    rejected: list[tuple[Record, dict[str, Any]]] = field(default_factory=list)
    dead: list[tuple[Record, str]] = field(default_factory=list)
    applied: int = 0
    reasons: Counter[Reason] = field(default_factory=Counter)


def _copy_account(a: Account) -> Account:
    return Account(a.available, a.held, a.locked)


def _copy_deposit(d: Deposit) -> Deposit:
    return Deposit(d.amount, d.state)


def _deposit_key_bytes(key: int) -> bytes:
    return deposit_key_bytes(key >> 32, key & 0xFFFF_FFFF)


def apply_partition(
    records: Sequence[Record],
    accounts: Mapping[bytes, bytes],
    deposits: Mapping[bytes, bytes],
    outcome: Outcome,
) -> None:
    """Apply the records of ONE partition, in offset order, adding to `outcome`.

    Every written entry records the offset of the batch's last record: all
    entries of a batch are committed, or replayed, together (docs/exactness.md).
    """
    account_view: TableView[Account] = TableView(
        accounts, account_key, decode_account, _copy_account
    )
    deposit_view: TableView[Deposit] = TableView(
        deposits, _deposit_key_bytes, decode_deposit, _copy_deposit
    )
    ledger = Ledger(account_view, deposit_view)
    apply = ledger.apply
    applied = 0
    for record in records:
        try:
            message = orjson.loads(record.value or b"")
            kind, client, tx, amount = row_from_message(message)
        except (orjson.JSONDecodeError, MalformedRow) as exc:
            detail = exc.detail if isinstance(exc, MalformedRow) else f"not JSON: {exc}"
            outcome.dead.append((record, detail))
            continue
        account_view.offset = deposit_view.offset = record.offset
        reason = apply(kind, client, tx, amount)
        if reason is None:
            applied += 1
        else:
            outcome.reasons[reason] += 1
            outcome.rejected.append(
                (
                    record,
                    {
                        "client": client,
                        "tx": tx,
                        "type": kind.value,
                        "reason": reason.value,
                        "line": message.get("line"),
                    },
                )
            )
    outcome.applied += applied
    if not records:
        return
    partition, last = records[-1].partition, records[-1].offset
    outcome.last_offsets[partition] = last
    for client, account, before in account_view.changes(mutable_values=True):
        outcome.account_writes.append(
            (partition, account_key(client), encode_account(account, last, before))
        )
    for key, deposit, deposit_before in deposit_view.changes(mutable_values=False):
        outcome.deposit_writes.append(
            (partition, _deposit_key_bytes(key), encode_deposit(deposit, last, deposit_before))
        )


def apply_batch(
    records: Sequence[Record], accounts: Mapping[bytes, bytes], deposits: Mapping[bytes, bytes]
) -> Outcome:
    """Apply records from any partitions: each partition's records in their order.

    The records must be each partition's next ones, once each, in offset
    order (processor.sequencing makes sure of that).
    """
    by_partition: dict[int, list[Record]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    outcome = Outcome()
    for partition_records in by_partition.values():
        apply_partition(partition_records, accounts, deposits, outcome)
    return outcome
