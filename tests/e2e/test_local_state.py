"""The worker's local state (state.store, state.restore): read what it lacks, trusted when right.

Issue 13. Each test runs real workers on a real broker and compares the
snapshot with process-csv (R18, R20, R21); what the restore read is the
worker's own count on /metrics (`ledger_state_restored_records_total`).
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from bench.workload import generate
from tests.e2e.test_observability import scrape
from tests.helpers import run
from tests.pipeline import Pipeline, wait_until


def _restored(pipeline: Pipeline, worker: object) -> float:
    samples = scrape(pipeline.web_url(worker, "/metrics"))  # type: ignore[arg-type]
    return sum(
        v for (name, _), v in samples.items() if name == "ledger_state_restored_records_total"
    )


def _changelog_records(pipeline: Pipeline) -> int:
    app = pipeline.env["LEDGER_APP_ID"]
    return sum(
        sum(pipeline.end_offsets(f"{app}-{table}-changelog").values())
        for table in ("accounts", "deposits")
    )


def _stores(pipeline: Pipeline) -> list[Path]:
    """Every partition store the workers of this pipeline keep (state.slots layout)."""
    app = pipeline.env["LEDGER_APP_ID"]
    return sorted((pipeline.workdir / "ledger-data" / app).glob("slot-*/partition-*"))


def _two_files(tmp_path: Path, rows: int, seed: int, clients: int = 300) -> tuple[Path, Path, Path]:
    lines = list(generate(rows, clients, seed, dirty=True))
    first, second, whole = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "whole.csv"
    first.write_text("".join(lines[: rows // 2]))
    second.write_text("".join(lines[rows // 2 :]))
    whole.write_text("".join(lines))
    return first, second, whole


def _ready(pipeline: Pipeline, worker: object) -> None:
    pipeline.wait_ready(worker)  # type: ignore[arg-type]


def test_a_restart_on_the_same_disk_reads_only_the_changelog_tails(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    first, second, whole = _two_files(tmp_path, 20_000, seed=21)
    worker = pipeline.start_worker(web=True)
    assert pipeline.produce(first).returncode == 0
    assert pipeline.export().returncode == 0
    time.sleep(2)  # an idle checkpoint (LEDGER_CHECKPOINT_INTERVAL, 1 s)
    assert pipeline.stop_worker(worker, signal.SIGTERM) == 0, pipeline.logs()
    history = _changelog_records(pipeline)
    assert history > 3_000, history

    worker = pipeline.start_worker(web=True)
    _ready(pipeline, worker)
    # Only what the store lacks: the tail past its last checkpoint (here:
    # nothing, or the last batch's markers). Faust's recovery read it all.
    assert _restored(pipeline, worker) <= history // 100, (_restored(pipeline, worker), history)
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(whole).stdout
    # `ledger-admin status --state`: each partition's position is its input's end.
    status = pipeline.run("ledger-admin", "status", "--state")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.decode().splitlines()
    at = lines.index(next(line for line in lines if line.startswith("partition   position")))
    rows = [line.split() for line in lines[at + 1 : at + 1 + pipeline.partitions]]
    ends = pipeline.end_offsets(pipeline.env["LEDGER_TRANSACTIONS_TOPIC"])
    assert {int(r[0]): int(r[1]) for r in rows} == ends, status.stdout
    assert all(int(r[2]) > 0 and int(r[3]) > 0 for r in rows), status.stdout


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_local_state_deleted_or_corrupted_is_read_again_from_the_changelogs(
    pipeline: Pipeline, tmp_path: Path, damage: str
) -> None:
    first, second, whole = _two_files(tmp_path, 10_000, seed=22)
    worker = pipeline.start_worker(web=True)
    assert pipeline.produce(first).returncode == 0
    assert pipeline.export().returncode == 0
    assert pipeline.stop_worker(worker, signal.SIGTERM) == 0, pipeline.logs()
    stores = _stores(pipeline)
    assert stores, "no local state written"
    for store in stores:
        if damage == "deleted":
            shutil.rmtree(store)
        else:
            for f in store.iterdir():
                if f.name.startswith("MANIFEST") or f.suffix in (".sst", ".log"):
                    f.write_bytes(b"not a rocksdb file" * 10)
    history = _changelog_records(pipeline)

    worker = pipeline.start_worker(web=True)
    _ready(pipeline, worker)
    # Everything committed, read back (markers and aborted records excepted).
    assert _restored(pipeline, worker) >= history // 2, (_restored(pipeline, worker), history)
    if damage == "corrupted":
        assert "local state unreadable" in pipeline.logs()
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(whole).stdout


def test_local_state_ahead_of_its_changelog_is_not_trusted(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A batch stored locally whose transaction never committed (LEDGER_FAULT_LOCAL_FIRST)."""
    # Many clients, few rows each: most accounts the lost batch touched are
    # not touched again, so a store trusted past its changelog shows.
    first, second, whole = _two_files(tmp_path, 12_000, seed=23, clients=5_000)
    pipeline.extra_env.update(LEDGER_FAULT_LOCAL_FIRST="1", LEDGER_BATCH_SIZE="500")
    doomed = pipeline.start_worker()
    assert pipeline.produce(first).returncode == 0
    wait_until(lambda: doomed.poll() is not None, 120, "the fault hook to stop the worker")
    assert "fault: batch stored locally" in pipeline.logs()

    pipeline.extra_env.pop("LEDGER_FAULT_LOCAL_FIRST")
    pipeline.start_worker()
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    # Trusted, the store would resume past a batch the changelog never got.
    assert exported.stdout == run(whole).stdout
    assert "local state not trusted" in pipeline.logs()


@pytest.mark.kafka
def test_a_replica_that_takes_over_a_killed_ones_partitions_starts_from_its_standby_copy(
    pipeline: Pipeline, tmp_path: Path, broker_engine: str
) -> None:
    """LEDGER_STANDBY_REPLICAS=1: the survivor has kept the other's partitions warm."""
    if broker_engine != "kafka":
        pytest.skip("standbys follow the group's member list, which Tansu 0.6 does not give")
    first, second, whole = _two_files(tmp_path, 20_000, seed=24)
    pipeline.extra_env["LEDGER_STANDBY_REPLICAS"] = "1"
    doomed = pipeline.start_worker(web=True)
    survivor = pipeline.start_worker(web=True)
    _ready(pipeline, doomed)
    _ready(pipeline, survivor)
    assert pipeline.produce(first).returncode == 0
    assert pipeline.export().returncode == 0
    history = _changelog_records(pipeline)
    before = _restored(pipeline, survivor)
    time.sleep(5)  # the standby copies catch up (they tail the changelogs)

    doomed.kill()  # SIGKILL: no goodbye, its partitions move after the session timeout
    doomed.wait()
    pipeline.workers.remove(doomed)
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(whole).stdout
    # Taking over about half of the partitions read only their tails.
    taken_over = _restored(pipeline, survivor) - before
    # Without standbys (LEDGER_STANDBY_REPLICAS=0) it reads about half the history.
    assert taken_over <= history // 20, (taken_over, history)
