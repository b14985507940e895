"""Broker faults on Apache Kafka: kill -9, clean restarts, and an outage longer than the timeouts.

Each test has a broker of its own (the `own_kafka` fixture) with its log in a
data directory, so the broker can die and come back on the same data, as a
real one does after a crash: what it had acknowledged is in its log (the page
cache survives a SIGKILL of the process). Meanwhile produce-csv publishes and
two workers apply; at the end `export-snapshot --wait` must be byte-identical
to `process-csv` on the same file (docs/exactness.md).

Workers that exit 75 (a write or commit whose outcome they could not learn)
are restarted, as compose and Kubernetes do (`Pipeline.supervise`).

`make test` runs one seed of the kill -9 case; `make chaos-broker` runs ten
(BROKER_CHAOS_RUNS), each printing its seed (BROKER_CHAOS_SEED replays one;
timing is not replayed).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.workload import generate
from embedded.kafka import KafkaBroker
from tests.helpers import run
from tests.pipeline import Pipeline, PipelineFactory, script

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

ROWS = int(os.environ.get("BROKER_CHAOS_ROWS", "40000"))
RUNS = int(os.environ.get("BROKER_CHAOS_RUNS", "1"))
KILLS = int(os.environ.get("BROKER_CHAOS_KILLS", "4"))
SEEDS = (
    [int(os.environ["BROKER_CHAOS_SEED"])]
    if os.environ.get("BROKER_CHAOS_SEED")
    else [random.SystemRandom().randrange(1 << 30) for _ in range(RUNS)]
)

OwnKafka = Callable[..., KafkaBroker]
Pipelines = Callable[[KafkaBroker, str], Pipeline]


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[Callable[[KafkaBroker, str], Pipeline]]:
    """Pipelines on a test's own broker; their workers are killed at the end, as ever."""
    factories: list[PipelineFactory] = []

    def make(broker: KafkaBroker, name: str) -> Pipeline:
        factories.append(PipelineFactory(broker.bootstrap, tmp_path, name, "kafka"))
        return factories[-1].new(partitions=6)

    try:
        yield make
    finally:
        for factory in factories:
            factory.close()


def _no_crash(pipeline: Pipeline, what: str) -> None:
    """Restart workers that exit 75 (as a supervisor would); any other exit is a bug."""
    pipeline.supervise()
    codes = [proc.poll() for proc in pipeline.workers]
    assert all(code is None for code in codes), (
        f"{what}: a worker exited {codes}\n{pipeline.logs()}"
    )


def _workload(tmp_path: Path, rows: int, seed: int) -> Path:
    path = tmp_path / "whole.csv"
    path.write_text("".join(generate(rows, max(rows // 60, 50), seed, dirty=True)))
    return path


def _start_producer(pipeline: Pipeline, csv: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [script("produce-csv"), str(csv), "--no-progress", "--create-topic"],
        env=pipeline.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish_and_compare(
    pipeline: Pipeline, producer: subprocess.Popen[bytes], csv: Path, what: str
) -> None:
    _out, err = producer.communicate(timeout=600)
    assert producer.returncode == 0, f"{what}: produce-csv: {err.decode()[-2000:]}"
    exported = pipeline.export(timeout=300)
    assert exported.returncode == 0, f"{what}: {exported.stderr!r}\n{pipeline.logs()}"
    (pipeline.workdir / "exported.csv").write_bytes(exported.stdout)
    assert exported.stdout == run(csv).stdout, f"{what}: snapshot differs from process-csv"


@pytest.mark.parametrize("seed", SEEDS)
def test_the_broker_killed_at_random_moments_leaves_the_snapshot_exact(
    own_kafka: OwnKafka, pipelines: Pipelines, tmp_path: Path, seed: int
) -> None:
    print(f"broker chaos seed {seed} (replay: BROKER_CHAOS_SEED={seed}), rows {ROWS}")
    rng = random.Random(seed)
    broker = own_kafka()
    pipeline = pipelines(broker, f"broker-chaos-{seed}")
    # Small batches keep the workers busy through every kill (mid-batch,
    # mid-write, mid-commit); large ones make each replay long.
    batch = rng.choice([200, 1_000, 5_000, 50_000])
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = str(batch)
    csv = _workload(tmp_path, ROWS, seed)
    chunks = _chunks(csv, KILLS + 1)
    pipeline.start_worker()
    pipeline.start_worker()
    for kill, chunk in enumerate(chunks[:-1]):
        # produce-csv publishes a chunk in about a second: the kill lands
        # while it sends, or just after, while only the workers run.
        producer = _start_producer(pipeline, chunk)
        time.sleep(rng.uniform(0.0, 2.0))
        _no_crash(pipeline, f"seed {seed}")
        broker.kill()
        pause = rng.uniform(0.2, 8.0)
        print(f"broker chaos seed {seed}: kill {kill + 1}, down {pause:.1f}s, batch {batch}")
        time.sleep(pause)
        _no_crash(pipeline, f"seed {seed}")
        broker.start()
        _out, err = producer.communicate(timeout=600)
        assert producer.returncode == 0, f"seed {seed}: produce-csv: {err.decode()[-2000:]}"
    time.sleep(2)
    _no_crash(pipeline, f"seed {seed}")
    _finish_and_compare(pipeline, _start_producer(pipeline, chunks[-1]), csv, f"seed {seed}")
    print(f"broker chaos seed {seed}: {KILLS} broker kills survived, snapshot exact")


def _chunks(csv: Path, count: int) -> list[Path]:
    """The file cut in `count` pieces (the header only in the first)."""
    rows = csv.read_text().splitlines(keepends=True)
    size = -(-len(rows) // count)
    paths = []
    for i in range(count):
        path = csv.with_name(f"chunk-{i}.csv")
        path.write_text("".join(rows[i * size : (i + 1) * size]))
        paths.append(path)
    return paths


def test_a_clean_broker_restart_mid_stream_loses_nothing(
    own_kafka: OwnKafka, pipelines: Pipelines, tmp_path: Path
) -> None:
    broker = own_kafka()
    pipeline = pipelines(broker, "broker-restart")
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "500"
    csv = _workload(tmp_path, 30_000, seed=7)
    pipeline.start_worker()
    pipeline.start_worker()
    producer = _start_producer(pipeline, csv)
    time.sleep(3)
    broker.stop()  # SIGTERM: Kafka's controlled shutdown
    broker.start()
    time.sleep(2)
    _no_crash(pipeline, "clean restart")
    _finish_and_compare(pipeline, producer, csv, "clean restart")


def test_workers_outlive_a_broker_outage_longer_than_their_request_timeout(
    own_kafka: OwnKafka, pipelines: Pipelines, tmp_path: Path
) -> None:
    """The chosen behaviour (docs/operations.md): workers wait for the broker.

    A worker in the middle of a batch whose writes or commit cannot be
    confirmed within LEDGER_REQUEST_TIMEOUT exits 75 and its supervisor
    restarts it; a worker restarted (or started) while the broker is down
    keeps trying to reach it instead of exiting. So an outage of any length
    ends with the same state as no outage, with no operator action.
    """
    broker = own_kafka()
    pipeline = pipelines(broker, "broker-outage")
    pipeline.extra_env.update(LEDGER_BATCH_SIZE="500", LEDGER_REQUEST_TIMEOUT="6")
    csv = _workload(tmp_path, 30_000, seed=11)
    first, second = pipeline.start_worker(), pipeline.start_worker()
    producer = _start_producer(pipeline, csv)
    time.sleep(3)
    broker.kill()
    # A replica started into the outage (a rescheduled pod, a restart after
    # exit 75): Faust's own start-up exits 1 within seconds without a broker.
    late = pipeline.start_worker()
    down = 25.0  # over four times the workers' request timeout
    deadline = time.monotonic() + down
    while time.monotonic() < deadline:
        pipeline.supervise()  # a worker that exits 75 is restarted, into the outage
        for proc in pipeline.workers:
            code = proc.poll()
            assert code in (None, 75), (
                f"a worker exited {code} during the outage\n{pipeline.logs()}"
            )
        time.sleep(0.5)
    broker.start()
    _finish_and_compare(pipeline, producer, csv, "long outage")
    assert late.poll() is None, "the replica started during the outage did not wait for it"
    assert first is not None and second is not None
