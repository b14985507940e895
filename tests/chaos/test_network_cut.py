"""A network cut: a replica loses its link to the broker, keeps running, and gets it back.

Unlike a SIGSTOP (tests/chaos/test_zombies.py) the cut-off replica is not
frozen: it goes on with the batch it has, its producers queue and retry
their writes, its consumer its heartbeats, all into a link that drops every
packet without an error (tests/netcut.py: the worker in its own network
namespace behind a veth pair whose far end is set down). The other replica
is handed its partitions after the session timeout. When the link comes
back, whatever the cut-off replica still had in flight reaches the broker
after the new owner's writes: under at-least-once those changelog records
would land on top of the new owner's. Each input partition's transactional
id fences them (the new owner called `init_transactions` before reading
the changelog); the old owner learns it at its commit and exits 75, and is
restarted behind the same link, as a supervisor would.

Several cuts per run at random moments while produce-csv publishes. Then
both snapshots must equal process-csv: right away, and after every replica
was restarted (state from the changelogs alone) and more rows applied.

Apache Kafka only: the broker needs a second listener advertised at the
relay's address (Tansu advertises one). `make chaos-netcut` runs several
seeds (NETCUT_RUNS); NETCUT_SEED replays one (timing is not replayed).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.workload import generate
from embedded.ports import free_port
from tests.chaos.test_zombies import _files, _no_crash, check_then_restart_all
from tests.helpers import cannot_run
from tests.netcut import NetCut, unavailable_reason
from tests.pipeline import TEST_SESSION_TIMEOUT, PipelineFactory, script

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

ROWS = int(os.environ.get("NETCUT_ROWS", "60000"))
RUNS = int(os.environ.get("NETCUT_RUNS", "1"))
ROUNDS = int(os.environ.get("NETCUT_ROUNDS", "2"))
SEEDS = (
    [int(os.environ["NETCUT_SEED"])]
    if os.environ.get("NETCUT_SEED")
    else [random.SystemRandom().randrange(1 << 30) for _ in range(RUNS)]
)


@pytest.fixture
def link() -> Any:
    reason = unavailable_reason()
    if reason is not None:
        cannot_run("the network-cut test", reason)
    cut = NetCut(broker_port=free_port())
    cut.start()
    try:
        yield cut
    finally:
        cut.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_replica_cut_off_from_the_broker_cannot_overwrite_the_new_owners_state(
    own_kafka: Any, link: NetCut, tmp_path: Path, seed: int
) -> None:  # R18, R20 (issue 12: zombie fencing, network cut)
    print(f"netcut seed {seed} (replay: NETCUT_SEED={seed}), rows {ROWS}, rounds {ROUNDS}")
    rng = random.Random(seed)
    broker = own_kafka(extra_listeners={"CUT": (link.broker_port, link.bootstrap)})
    factory = PipelineFactory(broker.bootstrap, tmp_path, "netcut", "kafka")
    try:
        pipeline = factory.new(partitions=4)
        # Small batches: the pair takes a few seconds per chunk, so the cut
        # lands in the middle of the stream, a batch in flight.
        batch = rng.choice([200, 1_000, 2_000])
        pipeline.extra_env["LEDGER_BATCH_SIZE"] = str(batch)
        print(f"netcut seed {seed}: batch size {batch}")
        rows = list(generate(ROWS, max(ROWS // 60, 50), seed, dirty=True))
        body = len(rows) - 1
        cuts = [*sorted(rng.sample(range(1, int(body * 0.8)), ROUNDS - 1)), int(body * 0.8)]
        parts = _files(tmp_path, rows, cuts)
        cut_for = float(TEST_SESSION_TIMEOUT)

        behind = pipeline.start_worker(link=link)
        pipeline.start_worker()
        for i, part in enumerate(parts[:-1]):
            producer = subprocess.Popen(
                [script("produce-csv"), str(part), "--no-progress", "--create-topic"],
                env=pipeline.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(rng.uniform(0.2, 2.0))
            pause = rng.uniform(2 * cut_for, 3 * cut_for)
            # Right after a burst of writes, most runs: a batch in flight.
            writing = False
            if rng.random() < 0.8:
                writing = link.cut_while_writing()
            else:
                link.cut()
            print(f"round {i}: worker {behind.pid} cut off for {pause:.1f}s, writing: {writing}")
            time.sleep(pause)
            link.restore()
            _, stderr = producer.communicate(timeout=300)
            assert producer.returncode == 0, stderr
            time.sleep(rng.uniform(0.0, 3.0))
            _no_crash(pipeline, f"round {i}")
            behind = next(w for w in pipeline.workers if w.pid in pipeline.links)

        check_then_restart_all(pipeline, tmp_path, parts, f"netcut seed {seed}", link)
    finally:
        factory.close()
