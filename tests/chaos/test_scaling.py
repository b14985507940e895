"""Scale out and back in while input flows: 1 -> 3 -> 1 replicas, snapshot exact."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bench.workload import generate
from tests.helpers import run
from tests.pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_scaling_from_one_replica_to_three_and_back_to_one_mid_stream_loses_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
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
