"""Records of an aborted transaction are never applied, recovered or exported (docs/exactness.md).

Workers read `transactions` and the changelogs read_committed (Faust's
default outside its own exactly-once mode is read_uncommitted), and so do
the exporter and every tool of ours. Aborted records appear on a changelog
when a batch's transaction fails or its worker is fenced; on the input when
a transactional producer aborts.

Apache Kafka only: Tansu 0.6 fences producers but hands aborted records to
read_committed readers (measured), so these properties cannot hold on it;
there the before-image replay rule undoes a torn batch instead.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from bench.workload import generate
from kafkaio.admin import ensure_topic
from ledger import Account
from ledger.keys import Placement
from processor.state import encode_account, encode_position, position_key
from tests.helpers import run
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


def _kafka_only(pipeline: Pipeline) -> None:
    if pipeline.engine == "tansu":
        pytest.skip("Tansu 0.6 serves aborted records to read_committed readers (measured)")


def _aborted(pipeline: Pipeline, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
    """Write `records` (topic, key, value, partition) in one transaction, then abort it."""
    producer = Producer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "transactional.id": f"intruder-{uuid.uuid4().hex[:8]}",
            "partitioner": "murmur2_random",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for topic, key, value, partition in records:
        if partition is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, partition)
    assert producer.flush(30) == 0  # on the broker: only the abort keeps them out
    producer.abort_transaction(30)


def _csv(path: Path, rows: int, seed: int) -> Path:
    path.write_text("".join(generate(rows, 200, seed=seed, dirty=True)))
    return path


def _clients(csv: Path) -> list[int]:
    """The clients with an account after `csv` (from process-csv's snapshot)."""
    return [int(line.split(b",")[0]) for line in run(csv).stdout.splitlines()[1:]]


def test_an_aborted_transaction_on_the_input_is_never_applied(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R18, R20
    _kafka_only(pipeline)
    csv = _csv(tmp_path / "in.csv", 3_000, seed=51)
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, pipeline.partitions)  # as a worker creates it
    assert pipeline.produce(csv).returncode == 0
    # A deposit of 1,000,000.0000 to every client of the file, aborted.
    clients = _clients(csv)
    intruders = [
        (
            topic,
            b"%d" % client,
            orjson.dumps(
                {"type": "deposit", "client": client, "tx": 10**8 + client, "amount": 10**10}
            ),
            None,
        )
        for client in sorted(clients)
    ]
    _aborted(pipeline, intruders)
    later = _csv(tmp_path / "later.csv", 2_000, seed=52)
    assert pipeline.produce(later).returncode == 0

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    both = tmp_path / "both.csv"
    both.write_text(csv.read_text() + "".join(later.read_text().splitlines(True)[1:]))
    assert exported.stdout == run(both).stdout


def test_an_aborted_transaction_on_a_changelog_is_never_recovered_or_exported(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R20, R21
    _kafka_only(pipeline)
    first = _csv(tmp_path / "first.csv", 3_000, seed=53)
    worker = pipeline.start_worker()
    assert pipeline.produce(first).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert pipeline.stop_worker(worker, signal.SIGTERM) == 0, pipeline.logs()

    # What a fenced or failed batch leaves behind: every client rich, and every
    # partition's position far ahead (a worker believing it would skip input).
    changelog = f"{pipeline.env['LEDGER_APP_ID']}-accounts-changelog"
    placement = Placement(pipeline.partitions)
    clients = _clients(first)
    junk: list[tuple[str, bytes, bytes, int | None]] = []
    for client in sorted(clients):
        key, partition = placement.of(client)
        junk.append((changelog, key, encode_account(Account(10**10, 0, False), 0, None), partition))
    for partition in range(pipeline.partitions):
        junk.append((changelog, position_key(partition), encode_position(10**9), partition))
    _aborted(pipeline, junk)

    unchanged = pipeline.run("export-snapshot")
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout == run(first).stdout

    pipeline.start_worker()  # recovers its tables from the changelog with the junk in it
    later = _csv(tmp_path / "later.csv", 2_000, seed=54)
    assert pipeline.produce(later).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    both = tmp_path / "both.csv"
    both.write_text(first.read_text() + "".join(later.read_text().splitlines(True)[1:]))
    assert exported.stdout == run(both).stdout
