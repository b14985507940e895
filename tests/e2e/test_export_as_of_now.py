"""`export-snapshot` without --wait while a worker is still applying: the state as of `as-of:`.

The snapshot must be exactly what `process-csv` gives for the records below
the printed positions (read from the state itself): every row of each
partition before its position, none after (per-client order is per-partition order, R18).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest

from bench.workload import generate
from kafkaio.admin import read_to_end
from tests.helpers import run
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka

_AS_OF = re.compile(rb"^as-of: (\S+) state positions \(partition:next offset\) ([\d: ]*)$", re.M)


def _csv_row(message: bytes) -> str:
    event = orjson.loads(message)
    amount = event.get("amount")
    text = "" if amount is None else f"{amount // 10_000}.{amount % 10_000:04d}"
    return f"{event['type']},{event['client']},{event['tx']},{text}\n"


def _rows_before(pipeline: Pipeline, as_of: dict[int, int]) -> list[str]:
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    rows = []
    for message in read_to_end(pipeline.bootstrap, topic, pipeline.partitions):
        if message.offset() < as_of.get(message.partition(), 0):
            rows.append(_csv_row(message.value()))
    return rows


def test_a_snapshot_taken_while_processing_is_exactly_the_state_as_of_its_offsets(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R18, R20, R21
    csv = tmp_path / "in.csv"
    csv.write_text("".join(generate(60_000, 2_000, seed=41, dirty=False)))
    # Tiny batches: a commit every 20 events, so exports land midway
    # (with the default 50k a worker applies all of it in a few batches).
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "20"
    pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    total = 60_000

    checked, midway = 0, 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        snapshot = pipeline.run("export-snapshot")
        assert snapshot.returncode == 0, snapshot.stderr
        found = _AS_OF.search(snapshot.stderr)
        assert found, snapshot.stderr
        as_of = {int(p): int(o) for p, o in (pair.split(b":") for pair in found[2].split())}
        prefix = tmp_path / f"prefix-{checked}.csv"
        rows = _rows_before(pipeline, as_of)
        prefix.write_text("type,client,tx,amount\n" + "".join(rows))
        assert snapshot.stdout == run(prefix).stdout, f"not the state as of {as_of}"
        checked += 1
        # Rows, not offsets: produce-csv publishes in transactions, and a
        # worker's position may stand past their commit markers (one offset
        # each, no row), so the offsets sum to more than the rows.
        done = len(rows)
        if 0 < done < total:
            midway += 1
        if done == total:
            break
    assert done == total, "the worker never caught up"
    if midway == 0:
        pytest.skip(f"the worker finished before any of {checked} exports could catch it midway")
