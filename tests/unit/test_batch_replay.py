"""The worker's batch core over plain dicts: batching, replay after a crash, duplicates.

Every test compares with the one-process ledger on the same rows: whatever
way the records arrive, the accounts must be those of `process-csv` (R18).
"""

from __future__ import annotations

import functools
import random

import orjson
import pytest

from bench.workload import generate
from ledger import Account, Ledger, read_rows, render_csv
from ledger.keys import Placement, client_key, partition_for
from ledger.messages import to_message
from ledger.model import TxKind
from processor.batch import Outcome, Record, apply_batch
from processor.control_batches import ControlBatches
from processor.sequencing import Sequencer
from processor.state import client_of, decode_account

PARTITIONS = 3
PLACEMENT = Placement(PARTITIONS)


def _records(rows: int, seed: int) -> list[Record]:
    """The workload as the worker sees it: partitioned by client, offsets per partition."""
    lines = [line.encode() for line in generate(rows, 60, seed, dirty=True)]
    next_offset = [0] * PARTITIONS
    records = []
    for number, kind, client, tx, amount in read_rows(lines, lambda _n, _d: None):
        partition = partition_for(client_key(client), PARTITIONS)  # M1
        value = orjson.dumps(to_message(kind, client, tx, amount, number))
        records.append(Record("tx", partition, next_offset[partition], client_key(client), value))
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

    def apply(self, batch: list[Record], sequencer: Sequencer | None = None) -> Outcome:
        admitted = sequencer.admit(batch).records if sequencer else batch
        outcome = apply_batch(admitted, self.accounts, self.deposits, PLACEMENT)
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
    stores, sequencer = Stores(), Sequencer()
    for batch in _split(records, random.Random(seed), largest=400):
        stores.apply(batch, sequencer)
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
    before_crash = Sequencer()
    for batch in _split(committed, rng, largest=300):
        stores.apply(batch, before_crash)
    stores.apply(uncommitted, before_crash)  # written, never committed: the crash

    after_restart = Sequencer()  # a new process expects nothing in particular
    for batch in _split(records[cut:], rng, largest=300):
        stores.apply(batch, after_restart)
    assert stores.snapshot() == _expected(records)


def test_the_last_record_of_a_batch_delivered_again_at_the_start_of_the_next_is_dropped() -> None:
    # Seen on faust-streaming 0.15 after a restart with input waiting.
    records = _records(2_000, seed=3)
    first = records[:1_000]
    again = [first[-1], *records[1_000:]]
    stores, sequencer = Stores(), Sequencer()
    stores.apply(first, sequencer)
    assert sequencer.admit([first[-1]]).duplicates == 1
    stores.apply(again, sequencer)
    assert stores.snapshot() == _expected(records)


def test_without_the_sequencer_that_duplicate_would_roll_the_previous_batch_back() -> None:
    # Why the worker checks the sequence at all: the replay rule alone reads a
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
    sequencer = Sequencer()
    admitted = sequencer.admit(doubled)
    assert admitted.duplicates == len(records)
    stores = Stores()
    stores.apply(admitted.records)
    assert stores.snapshot() == _expected(records)


def test_records_after_a_hole_wait_until_the_missing_one_is_delivered_again() -> None:
    # Seen in the chaos test: offset 283 of a partition never reached the agent.
    records = _records(1_000, seed=5)
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    missing = mine[10]
    sequencer = Sequencer()
    admitted = sequencer.admit([r for r in records if r is not missing])
    assert admitted.holes == {partition: missing.offset}
    assert all(r.offset < missing.offset for r in admitted.records if r.partition == partition)
    # The worker seeks back to the hole; the consumer delivers from there again.
    again = sequencer.admit(mine[10:])
    assert not again.holes and again.records == mine[10:]
    stores = Stores()
    stores.apply(admitted.records + again.records)
    assert stores.snapshot() == _expected(records)


def test_a_hole_the_broker_confirms_is_skipped() -> None:  # e.g. a transaction marker
    records = _records(200, seed=6)
    first = records[0]
    sequencer = Sequencer()
    sequencer.admit([first])
    later = first._replace(offset=first.offset + 5)
    assert sequencer.admit([later]).holes == {first.partition: first.offset + 1}
    sequencer.skip_to(first.partition, later.offset)
    assert sequencer.admit([later]).records == [later]


def test_records_held_after_skips_the_broker_confirms_are_admitted_without_fetching_again() -> (
    None
):  # transaction markers of a transactional producer: one offset each, never delivered
    records = _records(1_000, seed=7)
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    # Markers after the 10th and the 20th record of the partition: offsets shift.
    shifted = [r._replace(offset=r.offset + (i >= 10) + (i >= 20)) for i, r in enumerate(mine)]
    batch = [r for r in records if r.partition != partition] + shifted
    sequencer = Sequencer()
    admitted = sequencer.admit(batch)
    assert admitted.holes == {partition: shifted[9].offset + 1}
    assert admitted.held[partition] == shifted[10:]
    sequencer.skip_to(partition, shifted[10].offset)  # what the broker said
    sequencer.readmit(admitted, {partition})
    assert admitted.holes == {partition: shifted[19].offset + 1}  # the second marker
    sequencer.skip_to(partition, shifted[20].offset)
    sequencer.readmit(admitted, {partition})
    assert not admitted.holes and not admitted.held and not admitted.held_back_from
    assert [r for r in admitted.records if r.partition == partition] == shifted
    stores = Stores()
    stores.apply(admitted.records)
    assert stores.snapshot() == _expected(records)


@pytest.mark.parametrize("seed", range(8))
def test_a_torn_batch_where_only_some_writes_landed_is_completed_exactly_on_replay(
    seed: int,
) -> None:
    # The worker died while sending the batch's changelog records: any subset
    # of them landed (an event's account write without its deposit write, or
    # the reverse). The replay from the last commit must neither skip the
    # missing half nor apply the present half again.
    records = _records(2_000, seed)
    rng = random.Random(seed)
    cut = rng.randint(200, 1_500)
    stores = Stores()
    stores.apply(records[:cut], Sequencer())
    torn = apply_batch(records[cut : cut + 300], stores.accounts, stores.deposits, PLACEMENT)
    for _partition, key, value in torn.account_writes:
        if rng.random() < 0.5:
            stores.accounts[key] = value
    for _partition, key, value in torn.deposit_writes:
        if rng.random() < 0.5:
            stores.deposits[key] = value
    after_restart = Sequencer()
    for batch in _split(records[cut:], rng, largest=250):
        stores.apply(batch, after_restart)
    assert stores.snapshot() == _expected(records)


def _deposit(client: int, tx: int, units: int) -> bytes:
    return orjson.dumps(to_message(TxKind.DEPOSIT, client, tx, units, tx))


def test_a_record_keyed_with_another_clients_id_changes_nothing_and_is_dead_lettered() -> None:
    # M2: client 7's deposit under client 8's key, on client 8's partition.
    stores = Stores()
    home = partition_for(b"7", PARTITIONS)
    stores.apply([Record("tx", home, 0, b"7", _deposit(7, 1, 8_000_000))])
    other = partition_for(b"8", PARTITIONS)
    outcome = stores.apply([Record("tx", other, 0, b"8", _deposit(7, 2, 50_000))])
    assert [(reason, r.offset) for r, reason, _detail in outcome.dead] == [("wrong_key", 0)]
    assert outcome.account_writes == [] and outcome.deposit_writes == []
    assert outcome.last_offsets == {other: 0}  # skipped, but its offset is consumed
    assert (
        stores.snapshot()
        == "client,available,held,total,locked\n7,800.0000,0.0000,800.0000,false\n"
    )


def test_a_record_with_its_own_key_on_another_partition_is_dead_lettered_as_wrong_partition() -> (
    None
):
    stores = Stores()
    home = partition_for(b"7", PARTITIONS)
    elsewhere = (home + 1) % PARTITIONS
    outcome = stores.apply([Record("tx", elsewhere, 0, b"7", _deposit(7, 1, 10_000))])
    assert [(reason, detail) for _r, reason, detail in outcome.dead] == [
        ("wrong_partition", f"key b'7' belongs on partition {home}")
    ]
    assert stores.accounts == {} and stores.deposits == {}


def test_a_record_without_a_key_is_dead_lettered_as_wrong_key() -> None:
    home = partition_for(b"7", PARTITIONS)
    outcome = Stores().apply([Record("tx", home, 0, None, _deposit(7, 1, 10_000))])
    assert [reason for _r, reason, _d in outcome.dead] == ["wrong_key"]


def test_gaps_made_only_of_markers_the_consumer_read_are_passed_in_the_same_pass() -> None:
    # produce-csv commits once a second: a 50,000-record batch spans several
    # of its markers per partition. Passed one hole at a time, each pass
    # admitted the rest of the batch again.
    records = _records(1_000, seed=8)
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    shifted = [r._replace(offset=r.offset + (i >= 10) + (i >= 20)) for i, r in enumerate(mine)]
    seen = ControlBatches()
    for marker in (shifted[9].offset + 1, shifted[19].offset + 1):
        seen.note("tx", partition, marker, marker + 1)
    sequencer = Sequencer(functools.partial(seen.covers, "tx"))
    admitted = sequencer.admit([r for r in records if r.partition != partition] + shifted)
    assert not admitted.holes and not admitted.held_back
    assert admitted.markers_passed == 2
    assert admitted.passed == {partition: shifted[20].offset}
    assert [r for r in admitted.records if r.partition == partition] == shifted
    stores = Stores()
    stores.apply(admitted.records)
    assert stores.snapshot() == _expected(records)


def test_a_gap_no_marker_explains_stays_a_hole_and_stops_the_partition() -> None:
    records = _records(1_000, seed=9)
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    missing = mine[10]  # a record the consumer skipped, not a marker
    seen = ControlBatches()
    after = mine[-1].offset + 1
    seen.note("tx", partition, after, after + 1)  # a marker past the last record: no gap here
    sequencer = Sequencer(functools.partial(seen.covers, "tx"))
    admitted = sequencer.admit([r for r in mine if r is not missing])
    assert admitted.holes == {partition: missing.offset}
    assert admitted.markers_passed == 0  # nothing is passed behind a hole
    assert all(r.offset < missing.offset for r in admitted.records)
