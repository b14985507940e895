"""The product end to end: produce-csv -> Faust workers -> export-snapshot --wait.

The contract (SPEC, first paragraph): every way of running gives byte-identical
output, so each test compares the exported snapshot with `process-csv` on the
same file.
"""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from bench.workload import generate
from tests.helpers import run
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


def _workload(path: Path, rows: int, clients: int, seed: int, dirty: bool) -> Path:
    path.write_text("".join(generate(rows, clients, seed, dirty=dirty)))
    return path


def _expected(csv: Path) -> bytes:
    return run(csv).stdout


def _halves(tmp_path: Path, rows: int, clients: int, seed: int) -> tuple[Path, Path, Path]:
    """A dirty workload as two files, first and second half, and as one whole file."""
    lines = list(generate(rows, clients, seed, dirty=True))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("".join(lines[: rows // 2]))
    second.write_text("".join(lines[rows // 2 :]))
    whole = tmp_path / "whole.csv"
    whole.write_text("".join(lines))
    return first, second, whole


def _apply_with_one_worker_then_stop_it(pipeline: Pipeline, csv: Path) -> None:
    worker = pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    assert pipeline.export().returncode == 0
    assert pipeline.stop_worker(worker, signal.SIGTERM) == 0, pipeline.logs()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_the_workers_snapshot_is_byte_identical_to_process_csv(
    pipeline: Pipeline, tmp_path: Path, workers: int, dirty: bool
) -> None:  # R18, R20, R21
    csv = _workload(tmp_path / "in.csv", rows=30_000, clients=2_000, seed=7 + workers, dirty=dirty)
    for _ in range(workers):
        pipeline.start_worker()
    produced = pipeline.produce(csv)
    assert produced.returncode == 0, produced.stderr
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == _expected(csv)
    assert b"as-of: " in exported.stderr


def test_a_worker_stopped_and_restarted_recovers_its_tables_and_applies_nothing_twice(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    first, second, whole = _halves(tmp_path, rows=20_000, clients=500, seed=11)
    _apply_with_one_worker_then_stop_it(pipeline, first)

    pipeline.start_worker()
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    (pipeline.workdir / "exported.csv").write_bytes(exported.stdout)  # for a post-mortem
    # Line numbers differ between the halves and the whole, amounts do not.
    assert exported.stdout == _expected(whole)


def test_export_writes_a_file_atomically_and_speaks_jsonl(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R20, R21
    csv = _workload(tmp_path / "in.csv", rows=3_000, clients=100, seed=5, dirty=True)
    pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    out = tmp_path / "accounts.csv"
    exported = pipeline.export("--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == b""
    assert out.read_bytes() == _expected(csv)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left

    as_jsonl = pipeline.export("--format", "jsonl")
    assert as_jsonl.returncode == 0
    objects = [orjson.loads(line) for line in as_jsonl.stdout.splitlines()]
    rows = out.read_text().splitlines()[1:]
    assert [
        f"{o['client']},{o['available']},{o['held']},{o['total']},{str(o['locked']).lower()}"
        for o in objects
    ] == rows


def test_a_state_restore_longer_than_the_request_timeout_is_not_cut_off(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 13: a cold restore of a long history takes minutes
    # Faust bounds every step of its recovery, the seek that restores the
    # local state included, by the request timeout (processor.recovery): a
    # restore of a long changelog would be cut off and started over, again
    # and again. The hook makes the restarted worker's restore take longer
    # than the request timeout (5 s here).
    first, second, whole = _halves(tmp_path, rows=6_000, clients=300, seed=13)
    _apply_with_one_worker_then_stop_it(pipeline, first)

    pipeline.extra_env.update(LEDGER_FAULT_SLOW_RECOVERY="8", LEDGER_REQUEST_TIMEOUT="5")
    pipeline.start_worker()
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export(timeout=120)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == _expected(whole)
    assert "recovery step timed out" not in pipeline.logs()
