"""Zombies: a replica frozen past its session timeout wakes up after its partitions moved.

SIGSTOP freezes a worker at a random moment (mid-batch, mid-write, mid-
commit: whatever it is doing) for two to three session timeouts; the other
replica is handed its partitions and recovers them; then SIGCONT. The woken
worker still has a batch in flight: its producer's queue, an open
transaction. Under at-least-once nothing stopped those changelog records
landing after the new owner's (KAFKA-12693 says so of Kafka Streams too).
Here each input partition's transactional id fences them: the new owner's
`init_transactions`, before it reads the changelog, aborts the zombie's
transaction and refuses its later writes; the zombie learns it at its
commit and exits 75 (restarted, as a supervisor would).

Several rounds per run, while produce-csv publishes. Then both snapshots
must equal process-csv: the one exported right away, and the one after
every replica was restarted (the state then comes from the changelogs
alone, so a stale record that landed there would show) and more rows were
applied.

`make test` runs one seed on each broker (Tansu fences too); `make chaos-
zombies` runs ten on Apache Kafka (ZOMBIE_RUNS). Each run prints its seed;
ZOMBIE_SEED replays one (timing is not replayed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.workload import generate
from tests.helpers import run
from tests.pipeline import EXIT_RESTART, TEST_SESSION_TIMEOUT, Pipeline, PipelineFactory, script

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

ROWS = int(os.environ.get("ZOMBIE_ROWS", "60000"))
RUNS = int(os.environ.get("ZOMBIE_RUNS", "1"))
ROUNDS = int(os.environ.get("ZOMBIE_ROUNDS", "3"))
SEEDS = (
    [int(os.environ["ZOMBIE_SEED"])]
    if os.environ.get("ZOMBIE_SEED")
    else [random.SystemRandom().randrange(1 << 30) for _ in range(RUNS)]
)


def _files(tmp_path: Path, rows: list[str], cuts: list[int]) -> list[Path]:
    header, body = rows[0], rows[1:]
    paths, start = [], 0
    for i, end in enumerate([*cuts, len(body)]):
        path = tmp_path / f"part-{i}.csv"
        path.write_text(header + "".join(body[start:end]))
        paths.append(path)
        start = end
    return paths


def _joined(tmp_path: Path, name: str, parts: list[Path]) -> Path:
    path = tmp_path / name
    lines = [parts[0].read_text().splitlines(True)[0]]
    for part in parts:
        lines.extend(part.read_text().splitlines(True)[1:])
    path.write_text("".join(lines))
    return path


def _no_crash(pipeline: Pipeline, what: str) -> None:
    """Restart workers that exit 75 (fenced, or a commit that failed); any other exit is a bug."""
    pipeline.supervise()
    codes = [proc.poll() for proc in pipeline.workers]
    assert all(code is None for code in codes), (
        f"{what}: a worker exited {codes}\n{pipeline.logs()}"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_replicas_frozen_past_their_session_timeout_cannot_overwrite_the_new_owners_state(
    pipeline_factory: PipelineFactory, tmp_path: Path, seed: int
) -> None:  # R18, R20 (issue 12: zombie fencing)
    print(f"zombie seed {seed} (replay: ZOMBIE_SEED={seed}), rows {ROWS}, rounds {ROUNDS}")
    rng = random.Random(seed)
    pipeline = pipeline_factory.new(partitions=6)
    batch = rng.choice([200, 2_000, 50_000])
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = str(batch)
    print(f"zombie seed {seed}: batch size {batch}")
    rows = list(generate(ROWS, max(ROWS // 60, 50), seed, dirty=True))
    body = len(rows) - 1
    # ROUNDS chunks while replicas freeze, then a last one after the restart.
    cuts = [*sorted(rng.sample(range(1, int(body * 0.8)), ROUNDS - 1)), int(body * 0.8)]
    parts = _files(tmp_path, rows, cuts)
    frozen_for = float(TEST_SESSION_TIMEOUT)

    pipeline.start_worker()
    pipeline.start_worker()
    for i, part in enumerate(parts[:-1]):
        producer = subprocess.Popen(
            [script("produce-csv"), str(part), "--no-progress", "--create-topic"],
            env=pipeline.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Soon after the chunk starts arriving, so that the frozen replica
        # is likely in the middle of a batch (a chunk takes the pair a few
        # seconds at small batch sizes, well under one at 50k).
        time.sleep(rng.uniform(0.2, 2.0))
        live = [w for w in pipeline.workers if w.poll() is None]
        victim = rng.choice(live)
        pause = rng.uniform(2 * frozen_for, 3 * frozen_for)
        print(f"round {i}: SIGSTOP worker {victim.pid} for {pause:.1f}s")
        os.kill(victim.pid, signal.SIGSTOP)
        time.sleep(pause)
        os.kill(victim.pid, signal.SIGCONT)
        assert producer.wait(timeout=300) == 0, producer.stderr.read() if producer.stderr else ""
        time.sleep(rng.uniform(0.0, 3.0))
        _no_crash(pipeline, f"round {i}")

    check_then_restart_all(pipeline, tmp_path, parts, f"zombie seed {seed}")


def check_then_restart_all(
    pipeline: Pipeline, tmp_path: Path, parts: list[Path], what: str, link: Any = None
) -> None:
    """After the faults: the snapshot equals process-csv on every part but the last;
    then every replica is restarted (the tables come back from the changelogs alone,
    so a stale record that landed there would show), the last part is produced, and
    the snapshot must equal process-csv on all of them. `link`: the first replica
    starts behind it again (tests/netcut.py)."""
    applied = _joined(tmp_path, "applied.csv", parts[:-1])
    exported = pipeline.export(timeout=300)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(applied).stdout, f"{what}: snapshot differs"
    fenced = sum(
        log.read_text(errors="replace").count("fenced: another worker owns this partition now")
        for log in pipeline.workdir.glob("worker-*.log")
    )
    print(f"{what}: {fenced} replicas stopped because they were fenced")

    for worker in pipeline.workers:
        if worker.poll() is None:
            code = pipeline.stop_worker(worker, signal.SIGTERM, timeout=60)
            # -SIGTERM: a replica the supervisor restarted moments before
            # (after exit 75) is still starting, before Faust handles the
            # signal (seen once in CI's network-cut run). Any other code is
            # a crash.
            assert code in (0, EXIT_RESTART, -signal.SIGTERM), pipeline.logs()
    pipeline.workers.clear()
    pipeline.start_worker(link=link)
    pipeline.start_worker()
    assert pipeline.produce(parts[-1]).returncode == 0
    exported = pipeline.export(timeout=300)
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    whole = _joined(tmp_path, "whole.csv", parts)
    assert exported.stdout == run(whole).stdout, f"{what}: snapshot after restart differs"
