"""Chaos: SIGKILL worker replicas at random moments; the snapshot must still be exact.

The input is produced in chunks while 2-3 replicas run; between chunks a
random replica is killed with SIGKILL (mid-batch, mid-changelog-write, during
its start-up or table recovery: whatever it is doing) and a new one started,
sometimes at once, sometimes later. At the end `export-snapshot --wait` must
be byte-identical to `process-csv` on the whole file (docs/exactness.md).
Each run also draws the workers' batch size (LEDGER_BATCH_SIZE): small
batches keep the workers busy for the whole run, so most kills land in the
middle of a batch; large ones exercise long replays.

`make test` runs the short case (one run, 40k rows, 6 kills); `make chaos`
the long one (CHAOS_ROWS=300000 CHAOS_RUNS=10 by default). A failing run
prints its seed; replay it with CHAOS_SEED=<seed> (timing is not replayed,
so a seed may pass on replay).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from bench.workload import generate
from tests.helpers import run
from tests.pipeline import PipelineFactory

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

ROWS = int(os.environ.get("CHAOS_ROWS", "40000"))
RUNS = int(os.environ.get("CHAOS_RUNS", "1"))
KILLS = int(os.environ.get("CHAOS_KILLS", "6"))
SEEDS = (
    [int(os.environ["CHAOS_SEED"])]
    if os.environ.get("CHAOS_SEED")
    else [random.SystemRandom().randrange(1 << 30) for _ in range(RUNS)]
)


@pytest.mark.parametrize("seed", SEEDS)
def test_replicas_killed_at_random_moments_leave_the_snapshot_exact(
    pipeline_factory: PipelineFactory, tmp_path: Path, seed: int
) -> None:
    print(f"chaos seed {seed} (replay: CHAOS_SEED={seed}), rows {ROWS}, kills {KILLS}")
    rng = random.Random(seed)
    pipeline = pipeline_factory.new(partitions=6)
    batch = rng.choice([50, 200, 1_000, 5_000, 50_000])
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = str(batch)
    print(f"chaos seed {seed}: batch size {batch}")
    rows = list(generate(ROWS, max(ROWS // 60, 50), seed, dirty=True))
    whole = tmp_path / "whole.csv"
    whole.write_text("".join(rows))
    chunks = _chunks(rows, KILLS, tmp_path)

    for _ in range(rng.choice([2, 3])):
        pipeline.start_worker()
    kills = 0
    for chunk in chunks:
        produced = pipeline.produce(chunk)
        assert produced.returncode == 0, produced.stderr
        time.sleep(rng.uniform(0.2, 4.0))  # sometimes mid-start-up, sometimes mid-batch
        pipeline.supervise()  # what compose/Kubernetes do for a worker that exits 75
        live = [proc for proc in pipeline.workers if proc.poll() is None]
        victim = live[rng.randrange(len(live))]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        pipeline.workers.remove(victim)
        kills += 1
        time.sleep(rng.choice([0.0, 0.0, rng.uniform(0.5, 5.0)]))
        pipeline.start_worker()

    exported = pipeline.export(timeout=300)
    assert exported.returncode == 0, f"seed {seed}: {exported.stderr!r}\n{pipeline.logs()}"
    (pipeline.workdir / "exported.csv").write_bytes(exported.stdout)
    assert kills >= KILLS
    assert exported.stdout == run(whole).stdout, f"seed {seed}: snapshot differs"
    print(f"chaos seed {seed}: {kills} kills survived, snapshot exact")


def _chunks(rows: list[str], count: int, where: Path) -> list[Path]:
    """The file cut in `count` pieces (header only in the first): one per kill."""
    size = -(-len(rows) // count)
    paths = []
    for i in range(count):
        path = where / f"chunk-{i}.csv"
        path.write_text("".join(rows[i * size : (i + 1) * size]))
        paths.append(path)
    return paths
