"""Poison messages on `transactions`: each goes to the dead-letter topic, the worker goes on.

produce-csv never publishes a malformed row, but anything can write to a
topic. The worker's rule (processor.batch): a value that cannot be decoded or
breaks R3-R6 is skipped to `transactions-dlq`, unchanged, with the reason and
its source; a row the rules refuse is reported on `transactions-rejected`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kafkaio.admin import ensure_topic, partition_count, read_to_end
from tests.helpers import run
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka

POISON: dict[str, bytes | None] = {
    "garbage bytes": b"\x00\xff\xfe not json at all",
    "truncated JSON": b'{"type": "deposit", "client": 1, "tx": 90',
    "JSON that is not an object": b"[1, 2, 3]",
    "a missing amount": b'{"type": "deposit", "client": 1, "tx": 91, "line": 3}',
    "a missing tx": b'{"type": "dispute", "client": 1}',
    "an unknown type": b'{"type": "transfer", "client": 1, "tx": 92, "amount": 5}',
    "a client above u16": b'{"type": "deposit", "client": 70000, "tx": 93, "amount": 5}',
    "a tx above u32": b'{"type": "deposit", "client": 1, "tx": 4294967296, "amount": 5}',
    "an amount above the maximum": (
        b'{"type": "deposit", "client": 1, "tx": 94, "amount": 9223372036854775808}'
    ),
    "a float amount": b'{"type": "deposit", "client": 1, "tx": 95, "amount": 1.5}',
    "a string amount": b'{"type": "deposit", "client": 1, "tx": 96, "amount": "1.5"}',
    "a boolean client": b'{"type": "deposit", "client": true, "tx": 97, "amount": 5}',
    "an empty value": None,
    # Hidden by a JSON decoder (last key wins, unknown fields dropped): issue 14.
    "a duplicated amount": b'{"type":"deposit","client":1,"tx":98,"amount":5,"amount":900000000}',
    "an unknown field": b'{"type":"deposit","client":1,"tx":99,"amount":5,"ammount":5}',
    "a line that forges log lines": (
        b'{"type":"deposit","client":1,"tx":100,"amount":5,"line":"3\nts=x level=info forged"}'
    ),
}


def _deposit(tx: int, units: int) -> bytes:
    return orjson.dumps({"type": "deposit", "client": 1, "tx": tx, "amount": units, "line": tx})


def test_every_poison_message_lands_in_the_dlq_and_the_next_valid_one_is_applied(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R3, R4, R5, R6, R7
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, pipeline.partitions)
    producer = pipeline.producer()
    # One key, so one partition, in this order: valid, poison, valid, poison, ...
    csv = ["type,client,tx,amount\n"]
    for tx, poison in enumerate(POISON.values(), start=1):
        producer.produce(topic, key=b"1", value=_deposit(tx, 10_000 + tx))
        csv.append(f"deposit,1,{tx},1.{tx:04d}\n")
        producer.produce(topic, key=b"1", value=poison)
    # Refused by the rules (R10): reported on the rejected topic, not dead-lettered.
    withdrawal = {"type": "withdrawal", "client": 1, "tx": 500, "amount": 10**9, "line": 99}
    producer.produce(topic, key=b"1", value=orjson.dumps(withdrawal))
    csv.append("withdrawal,1,500,100000\n")
    assert producer.flush(30) == 0

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    expected_csv = tmp_path / "valid.csv"
    expected_csv.write_text("".join(csv))
    assert exported.stdout == run(expected_csv).stdout

    dead = _read(pipeline, pipeline.env["LEDGER_DLQ_TOPIC"])
    assert [m.value() for m in dead] == list(POISON.values())
    for message in dead:
        headers = dict(message.headers() or [])
        assert headers["reason"] == b"malformed"
        assert headers["detail"]
        source = orjson.loads(headers["source"])
        assert source["topic"] == topic and isinstance(source["offset"], int)
    offsets = [orjson.loads(dict(m.headers() or [])["source"])["offset"] for m in dead]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(POISON)


def test_a_row_the_rules_refuse_is_reported_on_the_rejected_topic_with_its_source(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R10, R19
    csv = tmp_path / "in.csv"
    csv.write_text("type,client,tx,amount\ndeposit,7,1,1.0\nwithdrawal,7,2,5.0\ndispute,7,99,\n")
    pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    assert pipeline.export().returncode == 0
    rejected = [orjson.loads(m.value()) for m in _read(pipeline, "LEDGER_REJECTED_TOPIC")]
    assert [(r["client"], r["tx"], r["reason"], r["line"]) for r in rejected] == [
        (7, 2, "insufficient_funds", 3),
        (7, 99, "unknown_tx", 4),
    ]
    assert all(r["source"]["topic"] == pipeline.env["LEDGER_TRANSACTIONS_TOPIC"] for r in rejected)


def _read(pipeline: Pipeline, topic_or_setting: str) -> list:  # type: ignore[type-arg]
    topic = pipeline.env.get(topic_or_setting, topic_or_setting)
    partitions = partition_count(pipeline.bootstrap, topic)
    messages = list(read_to_end(pipeline.bootstrap, topic, partitions))
    return sorted(messages, key=lambda m: (m.partition(), m.offset()))


def test_misplaced_messages_change_no_balance_and_are_dead_lettered_with_their_reason(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # M1, M2
    from ledger.keys import client_key, partition_for

    csv = tmp_path / "in.csv"
    csv.write_text("type,client,tx,amount\ndeposit,7,1,800.0\ndeposit,8,2,1.0\n")
    assert pipeline.produce(csv).returncode == 0
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    home = partition_for(client_key(7), pipeline.partitions)
    producer = pipeline.producer()
    # Client 7's deposit under client 8's key (so on client 8's partition),
    # then client 7's own key on a partition that is not its own.
    producer.produce(topic, key=b"8", value=_deposit_of(7, 3, 50_000))
    elsewhere = (home + 1) % pipeline.partitions
    producer.produce(topic, key=b"7", value=_deposit_of(7, 4, 50_000), partition=elsewhere)
    assert producer.flush(30) == 0

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    # Only 800.0000 (the record refused) is right; 805.0000 would be the
    # record applied, anything else is the balance of a wrong copy.
    assert exported.stdout == run(csv).stdout
    assert b"\n7,800.0000,0.0000,800.0000,false\n" in exported.stdout
    dead = _read(pipeline, pipeline.env["LEDGER_DLQ_TOPIC"])
    reasons = sorted(dict(m.headers() or [])["reason"] for m in dead)
    assert reasons == [b"wrong_key", b"wrong_partition"]


def _deposit_of(client: int, tx: int, units: int) -> bytes:
    return orjson.dumps(
        {"type": "deposit", "client": client, "tx": tx, "amount": units, "line": tx}
    )


def test_a_huge_value_is_dead_lettered_without_its_copy_and_the_worker_goes_on(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 14: hostile input
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, pipeline.partitions)
    producer = pipeline.producer()
    # 600 KB in one field: copied whole into a DLQ record with a detail that
    # quoted it, it made a ~1.2 MB record the broker refused, and the worker
    # stopped on it at every restart. And a bad value of 3 KB, quoted in the
    # detail of an ordinary malformed message.
    huge = b'{"type":"deposit","client":1,"tx":7,"amount":"' + b"9" * 600_000 + b'"}'
    wordy = b'{"type":"deposit","client":1,"tx":8,"amount":"' + b"\n" * 1_500 + b'"}'
    producer.produce(topic, key=b"1", value=_deposit(1, 10_000))
    producer.produce(topic, key=b"1", value=huge)
    producer.produce(topic, key=b"1", value=wordy)
    producer.produce(topic, key=b"1", value=_deposit(2, 20_000))
    assert producer.flush(30) == 0

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run_text(tmp_path, "deposit,1,1,1.0\ndeposit,1,2,2.0\n")

    too_large, malformed = _read(pipeline, pipeline.env["LEDGER_DLQ_TOPIC"])
    headers = dict(too_large.headers() or [])
    assert headers["reason"] == b"too_large"
    assert too_large.value() is None  # left at its source:
    assert orjson.loads(headers["source"])["topic"] == topic
    headers = dict(malformed.headers() or [])
    assert headers["reason"] == b"malformed"
    assert len(headers["detail"]) < 300, headers["detail"]
    assert malformed.value() == wordy  # small enough to copy: unchanged
    assert "\n\n" not in pipeline.logs()  # the detail's newlines are escaped in the log


def run_text(tmp_path: Path, rows: str) -> bytes:
    csv = tmp_path / "expected.csv"
    csv.write_text("type,client,tx,amount\n" + rows)
    return run(csv).stdout
