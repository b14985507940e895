"""Replicas come and go while input flows: scale 1 -> 3 -> 1, rolling restarts, SIGTERM.

The workers run with small batches here (LEDGER_BATCH_SIZE), so that a few
tens of thousands of rows keep them busy for seconds and every stop and
rebalance lands mid-stream; with the default 50k a worker would apply each
chunk in a fraction of a second.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bench.workload import generate
from kafkaio.admin import committed_offsets, read_to_end
from processor.state import decode_account, decode_position, is_position_key
from tests.helpers import run
from tests.pipeline import Pipeline, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_scaling_from_one_replica_to_three_and_back_to_one_mid_stream_loses_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "300"
    rows = list(generate(30_000, 600, seed=21, dirty=True))
    whole = tmp_path / "whole.csv"
    whole.write_text("".join(rows))
    parts = [rows[:10_000], rows[10_000:20_000], rows[20_000:]]
    chunks = []
    for i, part in enumerate(parts):
        chunks.append(tmp_path / f"part-{i}.csv")
        chunks[-1].write_text("".join(part))

    first = pipeline.start_worker()
    assert pipeline.produce(chunks[0]).returncode == 0
    time.sleep(2)
    extra = [pipeline.start_worker(), pipeline.start_worker()]  # scale out: a rebalance
    assert pipeline.produce(chunks[1]).returncode == 0
    time.sleep(3)
    for proc in extra:  # scale in, gracefully: each finishes its batch and commits
        assert pipeline.stop_worker(proc, signal.SIGTERM) == 0, pipeline.logs()
    assert pipeline.produce(chunks[2]).returncode == 0

    exported = pipeline.export(timeout=240)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(whole).stdout
    assert first.poll() is None  # the first replica ran throughout


def _committed_offsets(pipeline: Pipeline) -> dict[int, int]:
    env = pipeline.env
    return committed_offsets(
        pipeline.bootstrap,
        env["LEDGER_APP_ID"],
        env["LEDGER_TRANSACTIONS_TOPIC"],
        pipeline.partitions,
    )


def _committed(pipeline: Pipeline) -> int:
    return sum(max(offset, 0) for offset in _committed_offsets(pipeline).values())


def _state(pipeline: Pipeline) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """The accounts changelog's positions, and (partition, offset) of every account entry."""
    changelog = f"{pipeline.env['LEDGER_APP_ID']}-accounts-changelog"
    positions: dict[int, int] = {}
    entries = []
    for message in read_to_end(pipeline.bootstrap, changelog, pipeline.partitions):
        if is_position_key(message.key()):
            positions[message.partition()] = decode_position(message.value())
        else:
            entries.append((message.partition(), decode_account(message.value()).offset))
    return positions, entries


def _uncommitted_entries(pipeline: Pipeline) -> list[tuple[int, int, int]]:
    """(partition, entry offset, position) of account entries past their state's position."""
    positions, entries = _state(pipeline)
    return [
        (p, offset, positions.get(p, 0)) for p, offset in entries if offset >= positions.get(p, 0)
    ]


def test_sigterm_mid_stream_finishes_the_batch_in_hand_commits_it_and_exits_0(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "300"
    csv = tmp_path / "in.csv"
    csv.write_text("".join(generate(150_000, 800, seed=23, dirty=True)))
    worker = pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    wait_until(lambda: _committed(pipeline) > 5_000, 120, "the worker to get going")
    stopped_at = time.monotonic()
    assert pipeline.stop_worker(worker, signal.SIGTERM, timeout=30) == 0, pipeline.logs()
    assert time.monotonic() - stopped_at < 15, "a graceful stop took too long"
    # Everything the worker wrote is committed: no entry is from a batch
    # whose offsets were not (a cut batch would leave such entries behind).
    assert 0 < _committed(pipeline) < 150_000, "not stopped mid-stream"
    assert _uncommitted_entries(pipeline) == [], pipeline.logs()
    # ... and the group's offsets (monitoring) were committed up to the state's positions.
    positions, _ = _state(pipeline)
    committed = {p: o for p, o in _committed_offsets(pipeline).items() if o >= 0}
    assert committed == {p: positions.get(p, 0) for p in committed}
    assert set(positions) <= set(committed)

    pipeline.start_worker()
    exported = pipeline.export(timeout=240)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(csv).stdout


def test_a_rolling_restart_of_every_replica_mid_stream_loses_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "300"
    csv = tmp_path / "in.csv"
    csv.write_text("".join(generate(60_000, 1_000, seed=25, dirty=True)))
    replicas = [pipeline.start_worker(), pipeline.start_worker()]
    assert pipeline.produce(csv).returncode == 0
    for old in replicas:  # one at a time, as a Deployment's rolling update does
        time.sleep(1.0)
        assert pipeline.stop_worker(old, signal.SIGTERM, timeout=30) == 0, pipeline.logs()
        pipeline.workers.remove(old)
        pipeline.start_worker()

    exported = pipeline.export(timeout=240)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(csv).stdout
