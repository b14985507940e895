"""The worker's batch core over plain dicts: batching, replay after a crash, duplicates.

Every test compares with the one-process ledger on the same rows: whatever
way the records arrive, the accounts must be those of `process-csv` (R18).
"""

from __future__ import annotations

import random

import orjson
import pytest

from bench.workload import generate
from ledger import Account, Ledger, read_rows, render_csv
from ledger.messages import to_message
from ledger.model import TxKind
from processor.batch import Outcome, Record, apply_batch
from processor.state import client_of, decode_account

PARTITIONS = 3


def _records(rows: int, seed: int) -> list[Record]:
    """The workload as the worker sees it: partitioned by client, offsets per partition."""
    lines = [line.encode() for line in generate(rows, 60, seed, dirty=True)]
    next_offset = [0] * PARTITIONS
    records = []
    for number, kind, client, tx, amount in read_rows(lines, lambda _n, _d: None):
        partition = client % PARTITIONS
        value = orjson.dumps(to_message(kind, client, tx, amount, number))
        records.append(Record("tx", partition, next_offset[partition], b"%d" % client, value))
        next_offset[partition] += 1
    return records


def _expected(records: list[Record]) -> str:
    ledger = Ledger({}, {})
    for record in records:
        m = orjson.loads(record.value or b"")
        ledger.apply(TxKind(m["type"]), m["client"], m["tx"], m.get("amount", 0))
    return render_csv(ledger.accounts)


class Stores:
    """The two tables, as the worker's stores hold them: bytes to bytes."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, bytes] = {}
        self.deposits: dict[bytes, bytes] = {}

    def apply(self, batch: list[Record], positions: dict[int, int] | None = None) -> Outcome:
        outcome = apply_batch(batch, self.accounts, self.deposits, positions)
        for _partition, key, value in outcome.account_writes:
            self.accounts[key] = value
        for _partition, key, value in outcome.deposit_writes:
            self.deposits[key] = value
        return outcome

    def snapshot(self) -> str:
        accounts: dict[int, Account] = {
            client_of(key): decode_account(raw).value  # type: ignore[misc]
            for key, raw in self.accounts.items()
        }
        return render_csv(accounts)


def _split(records: list[Record], rng: random.Random, largest: int) -> list[list[Record]]:
    batches, i = [], 0
    while i < len(records):
        size = rng.randint(1, largest)
        batches.append(records[i : i + size])
        i += size
    return batches


@pytest.mark.parametrize("seed", range(5))
def test_any_batching_of_the_records_gives_the_one_process_accounts(seed: int) -> None:  # R18
    records = _records(3_000, seed)
    stores, positions = Stores(), {}
    for batch in _split(records, random.Random(seed), largest=400):
        stores.apply(batch, positions)
    assert stores.snapshot() == _expected(records)


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_written_but_not_committed_is_replayed_after_a_crash_without_double_applying(
    seed: int,
) -> None:
    # The worker wrote a batch's changelog records and died before committing
    # its input offsets. The next owner restarts from the last commit, with
    # the written state, and may cut the replayed records into other batches.
    records = _records(3_000, seed)
    rng = random.Random(seed)
    cut = rng.randint(500, 2_000)
    committed, uncommitted = records[:cut], records[cut : cut + rng.randint(1, 600)]
    stores = Stores()
    for batch in _split(committed, rng, largest=300):
        stores.apply(batch, {})
    stores.apply(uncommitted)  # written, never committed: the crash

    after_restart: dict[int, int] = {}  # a new process knows no positions
    for batch in _split(records[cut:], rng, largest=300):
        stores.apply(batch, after_restart)
    assert stores.snapshot() == _expected(records)


def test_the_last_record_of_a_batch_delivered_again_at_the_start_of_the_next_is_skipped() -> None:
    # Seen on faust-streaming 0.15 after a restart with input waiting.
    records = _records(2_000, seed=3)
    first = records[:1_000]
    again = [first[-1], *records[1_000:]]
    stores, positions = Stores(), {}
    stores.apply(first, positions)
    outcome = stores.apply(again, positions)
    assert outcome.duplicates == 1
    assert stores.snapshot() == _expected(records)


def test_without_positions_that_duplicate_would_roll_the_previous_batch_back() -> None:
    # Why apply_batch tracks positions at all: the replay rule alone reads a
    # repeated record as the start of a replay.
    records = _records(2_000, seed=3)
    first = records[:1_000]
    again = [first[-1], *records[1_000:]]
    stores = Stores()
    stores.apply(first)
    stores.apply(again)
    assert stores.snapshot() != _expected(records)


def test_a_record_repeated_inside_one_batch_is_applied_once() -> None:
    records = _records(500, seed=4)
    doubled = [r for record in records for r in (record, record)]
    stores = Stores()
    outcome = stores.apply(doubled, {})
    assert outcome.duplicates == len(records)
    assert stores.snapshot() == _expected(records)
