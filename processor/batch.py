"""Applying a batch of `transactions` records: decode -> ledger core -> table writes.

Pure apart from the stores it reads: no Faust, no network, so the same code is
tested against plain dicts and run by the worker against Faust tables.
Skip-versus-crash is decided here and only here: a record that cannot be
decoded, or breaks R3-R6, or is keyed or partitioned unlike its client's
messages (SPEC M1/M2), is *skipped* to the dead-letter list; a record the
rules refuse is *applied as a rejection* (R10, R19). Anything else raises and
stops the worker, because continuing past an unexplained error could lose or
double-apply a transaction.

Speed: the rules run on plain dicts of decoded entries (`PartitionCache`), the
same `Ledger.apply` that process-csv uses, not on a view that decodes table
bytes per access. An entry is decoded from its table bytes once, the first
time a batch needs it after the partition was assigned; after that the cache
*is* the committed state, because the worker commits every batch it applies or
exits (processor.agent). Each touched key is written once per batch (Kafka
Streams' record cache does the same: one changelog record per key per commit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

import orjson

from ledger import Account, Deposit, Ledger, MalformedRow, Reason
from ledger.keys import Placement
from ledger.messages import row_from_message, strict_value
from ledger.model import WITHDRAWAL
from processor.state import (
    account_key,
    decode_account,
    decode_deposit,
    deposit_key_bytes,
    encode_account,
    encode_deposit,
)


class Consumed(Protocol):
    """One consumed record: aiokafka's, as the consumer hands it over, or a `Record`."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Record(NamedTuple):
    """A record made here (tests, tools); the worker applies aiokafka's own (`Consumed`).

    Not copying each consumed record into one of these saves ~0.3 s of a
    worker's CPU per million events (measured: 50,000 copies take 15 ms).
    """

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
    #: A None value is a tombstone: the deposit can never change again (`forget_locked`).
    deposit_writes: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    #: Per partition, the offset of the last record applied.
    last_offsets: dict[int, int] = field(default_factory=dict)
    rejected: list[tuple[Consumed, dict[str, Any]]] = field(default_factory=list)
    #: (record, reason, detail): reason is `malformed`, `too_large`, `wrong_key` or
    #: `wrong_partition`; the detail is at most a few hundred characters.
    dead: list[tuple[Consumed, str, str]] = field(default_factory=list)
    applied: int = 0
    reasons: Counter[Reason] = field(default_factory=Counter)


class Readable(Protocol):
    """What the core reads a table through: a dict, or a partition's store (state.store)."""

    def get(self, key: bytes, default: None = None, /) -> bytes | None: ...


class _Loader:
    """First access of a key in a batch: remember its value before the batch, loading it if needed.

    Replay rule (docs/exactness.md): a stored entry whose offset is >= the
    batch's first offset was written by a batch whose input was never
    committed, so this batch is applying those events for the second time;
    the entry's `before` (its value as that batch began) is the state to
    start from, and the entry is rewritten even if this batch leaves it as is.
    """

    def __init__(self, store: Readable, start: int) -> None:
        self.store = store
        #: The batch's working state, what `Ledger` reads and changes.
        self.cache: dict[int, Any] = {}
        self.start = start
        self.before: dict[int, Any] = {}
        self.rolled_back: set[int] = set()

    def load(self, key: int, raw_key: bytes, decode: Any, copy: Any) -> None:
        value = None
        raw = self.store.get(raw_key)
        if raw is not None:
            stored = decode(raw)
            if stored.offset >= self.start:
                value = stored.before
                self.rolled_back.add(key)
            else:
                value = stored.value
            if value is not None:
                self.cache[key] = value
        self.before[key] = None if value is None else copy(value)

    def changed(self) -> list[tuple[int, Any, Any]]:
        """(key, value, value before the batch) for every key the batch must write."""
        cache, rolled_back = self.cache, self.rolled_back
        out = []
        for key, before in self.before.items():
            value = cache.get(key)
            if value is not None and (before is None or key in rolled_back or value != before):
                out.append((key, value, before))
        return out


def _copy_account(a: Account) -> Account:
    return Account(a.available, a.held, a.locked)


def _copy_deposit(d: Deposit) -> Deposit:
    return Deposit(d.amount, d.state)


#: Dead-letter reasons besides `malformed` (SPEC M2).
WRONG_KEY = "wrong_key"
WRONG_PARTITION = "wrong_partition"
#: A value longer than MAX_VALUE_BYTES: not decoded at all, and dead-lettered
#: without its value (processor.agent), which stays readable at its source.
TOO_LARGE = "too_large"
#: produce-csv's messages are under 120 bytes; a CSV line may be at most
#: 4096 (SPEC R23). Anything longer is not a transaction, and copying it
#: whole into a DLQ record could exceed the broker's message.max.bytes
#: (1 MiB by default), refusing the batch's transaction for good.
MAX_VALUE_BYTES = 4096
#: Characters of a decoder's message kept in a detail.
_DETAIL = 200


def apply_partition(
    records: Sequence[Consumed],
    accounts: Readable,
    deposits: Readable,
    outcome: Outcome,
    placement: Placement,
    forget_locked: bool = False,
) -> None:
    """Apply the records of ONE partition, in offset order, adding to `outcome`.

    Every written entry records the offset of the batch's last record: all
    entries of a batch are committed, or replayed, together (docs/exactness.md).

    A record must carry its client's key and sit on its client's partition
    (M1). One that does not would be applied out of order with the client's
    other records, by whichever worker owns its partition, against a copy of
    the account that is not the real one (accounts live in their client's
    partition): it changes no state and goes to the dead letters (M2).
    """
    if not records:
        return
    start = records[0].offset
    account_loader = _Loader(accounts, start)
    deposit_loader = _Loader(deposits, start)
    load_account, load_deposit = account_loader.load, deposit_loader.load
    account_before, deposit_before = account_loader.before, deposit_loader.before
    apply = Ledger(account_loader.cache, deposit_loader.cache).apply
    withdrawal = WITHDRAWAL
    place = placement.of
    applied = 0
    for record in records:
        value = record.value or b""
        if len(value) > MAX_VALUE_BYTES:
            detail = f"value is {len(value)} bytes, over {MAX_VALUE_BYTES}"
            outcome.dead.append((record, TOO_LARGE, detail))
            continue
        try:
            message = orjson.loads(value)
            kind, client, tx, amount = row_from_message(message)
            # What decoding hides (duplicate or unknown fields, a line that
            # is not a number) is decided by ledger.messages.strict_value,
            # exact and slow; this cheap test calls it only when it may
            # matter. It passes a value only if its fields are all known and
            # present once (another field, or a repeated one, changes the
            # count of fields or of quote characters: only the type's value
            # is a string in a well-formed message) and its line an integer.
            # Inline: it runs for every event (~0.4 us here, of ~5 us).
            line = message.get("line")
            fields = 3 + ("amount" in message) + (line is not None)
            if (
                len(message) != fields
                or value.count(34) != 2 * fields + 2  # 34: '"'
                or (line is not None and type(line) is not int)
            ):
                strict_value(value, message)
        except (orjson.JSONDecodeError, MalformedRow) as exc:
            detail = exc.detail if isinstance(exc, MalformedRow) else f"not JSON: {exc}"
            outcome.dead.append((record, "malformed", detail[:_DETAIL]))
            continue
        own_key, home = place(client)
        if record.key != own_key or record.partition != home:
            outcome.dead.append(_misplaced(record, client, own_key, home))
            continue
        # Each entry is loaded once per batch, before the rules first touch it.
        if client not in account_before:
            load_account(client, account_key(client), decode_account, _copy_account)
        if kind is not withdrawal:
            key = client << 32 | tx
            if key not in deposit_before:
                load_deposit(key, deposit_key_bytes(client, tx), decode_deposit, _copy_deposit)
        reason = apply(kind, client, tx, amount)
        if reason is None:
            applied += 1
            continue
        outcome.reasons[reason] += 1
        rejection = {"client": client, "tx": tx, "type": kind.value, "reason": reason.value}
        rejection["line"] = message.get("line")
        outcome.rejected.append((record, rejection))
    outcome.applied += applied
    partition, last = records[-1].partition, records[-1].offset
    outcome.last_offsets[partition] = last
    locked_now = set()
    for client, account, before in account_loader.changed():
        outcome.account_writes.append(
            (partition, account_key(client), encode_account(account, last, before))
        )
        if forget_locked and account.locked and (before is None or not before.locked):
            locked_now.add(client)
    if locked_now:
        _forget_deposits_of(locked_now, deposits, partition, outcome)
    for key, deposit, before in deposit_loader.changed():
        if key >> 32 in locked_now:
            continue
        outcome.deposit_writes.append(
            (
                partition,
                deposit_key_bytes(key >> 32, key & 0xFFFF_FFFF),
                encode_deposit(deposit, last, before),
            )
        )


def _forget_deposits_of(
    clients: set[int], deposits: Readable, partition: int, outcome: Outcome
) -> None:
    """A tombstone for every stored deposit of accounts this batch locked.

    R17 refuses every later row of a locked account before any deposit is
    looked up (a repeated deposit id included), so those entries can never
    be read or changed again: keeping them would only grow the state. One
    tombstone per deposit that exists in the store; deposits created in
    this very batch were never written, and are not now.
    """
    for client in sorted(clients):
        stored = set(_client_deposit_keys(deposits, client))
        for key in sorted(stored):
            outcome.deposit_writes.append((partition, key, None))


def _client_deposit_keys(deposits: Readable, client: int) -> list[bytes]:
    keys_of = getattr(deposits, "client_keys", None)
    if keys_of is not None:
        return list(keys_of(client))
    prefix = b"%d:" % client
    return [k for k in deposits if k.startswith(prefix)]  # type: ignore[attr-defined]


def _misplaced(record: Consumed, client: int, key: bytes, home: int) -> tuple[Consumed, str, str]:
    if record.key != key:
        shown = record.key[:32] if record.key is not None else None
        return record, WRONG_KEY, f"client {client} must be keyed {key!r}, got {shown!r}"
    return record, WRONG_PARTITION, f"key {key!r} belongs on partition {home}"


def apply_batch(
    records: Sequence[Consumed],
    accounts: Mapping[bytes, bytes],
    deposits: Mapping[bytes, bytes],
    placement: Placement,
) -> Outcome:
    """Apply records from any partitions: each partition's records in their order.

    The records must be each partition's next ones, once each, in offset
    order (processor.sequencing makes sure of that). `placement` knows the
    partition count of the input topic, for the M1 checks.
    """
    tables = (cast(Readable, accounts), cast(Readable, deposits))
    return apply_batch_to(records, lambda _partition: tables, placement)


#: partition -> (its accounts, its deposits), as the core reads them.
TablesOf = Callable[[int], tuple[Readable, Readable]]


def apply_batch_to(
    records: Sequence[Consumed],
    tables_of: TablesOf,
    placement: Placement,
    forget_locked: bool = False,
) -> Outcome:
    """`apply_batch` with each partition's own tables (the worker keeps a store per partition).

    `forget_locked`: tombstone the deposits of accounts a batch locks
    (`_forget_deposits_of`); only where every reader of the deposits
    changelog filters aborted transactions (read_committed), since an
    aborted tombstone read by a read_uncommitted reader would delete a
    deposit a replay still needs.
    """
    by_partition: dict[int, list[Consumed]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    outcome = Outcome()
    for partition, partition_records in by_partition.items():
        accounts, deposits = tables_of(partition)
        apply_partition(partition_records, accounts, deposits, outcome, placement, forget_locked)
    return outcome
