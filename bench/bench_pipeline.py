"""The Kafka pipeline on the embedded broker: producer, workers, end to end, and the ceiling.

    python -m bench.bench_pipeline [--rows 1000000 --clients 5000 --runs 3 --workers 1 2]

Each run starts a fresh broker (memory storage), N worker replicas, waits for
the group to form, then times:

- produce-csv: rows/s from start to exit (workers are already consuming, as in
  real use, so the two share the 2 cores);
- the workers: events/s from their first commit to lag 0 (every partition's
  committed offset at its end);
- end to end: seconds from the start of produce-csv to lag 0;
- the ceiling, in the same run: a plain confluent-kafka consumer reading the
  same topic from the beginning to its end and decoding every value (orjson),
  i.e. what any Python consumer of this topic costs before doing any work.

The snapshot is then exported and compared with `process-csv` on the same
file; a mismatch fails the benchmark. Medians over runs; ratios against the
ceiling of the same run, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.workload import generate
from embedded.broker import running_broker
from kafkaio.admin import committed_offsets, end_offsets, wait_for_broker

BIN = Path(sys.executable).parent
PARTITIONS = 8
TOPIC = "transactions"
GROUP = "ledger"


@dataclass
class Run:
    workers: int
    produce_s: float
    work_s: float
    e2e_s: float
    ceiling_s: float
    events: int


def _env(bootstrap: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        LEDGER_PARTITIONS=str(PARTITIONS),
        LEDGER_SESSION_TIMEOUT="6",
        LEDGER_HEARTBEAT_INTERVAL="1",
        LEDGER_REQUEST_TIMEOUT="10",
        LEDGER_WEB_PORT="0",
    )
    return env


def _wait_for_members(bootstrap: str, count: int, timeout: float = 90) -> None:
    """Until the group has `count` members with partitions (or the timeout: then go on)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=5)
            members = [m for m in group.members if m.assignment.topic_partitions]
            if len(members) >= count:
                return
        except Exception:  # the group does not exist yet
            pass
        time.sleep(0.5)


def _ceiling(bootstrap: str) -> tuple[float, int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-ceiling",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    pending, events = set(range(PARTITIONS)), 0
    start = time.perf_counter()
    while pending:
        for message in consumer.consume(10_000, timeout=1.0):
            error = message.error()
            if error is None:
                orjson.loads(message.value() or b"")
                events += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
    seconds = time.perf_counter() - start
    consumer.close()
    return seconds, events


def one_run(csv: Path, expected: bytes, workers: int, workdir: Path) -> Run:
    with running_broker(log=workdir / "broker.log") as broker:
        bootstrap = broker.bootstrap
        wait_for_broker(bootstrap)
        env = _env(bootstrap)
        procs = []
        for n in range(workers):
            log = open(workdir / f"worker-{workers}-{n}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [BIN / "faust", "-A", "processor", "worker", "-l", "warn"],
                    env=env,
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            _wait_for_members(bootstrap, workers)
            t0 = time.perf_counter()
            subprocess.run(
                [BIN / "produce-csv", str(csv), "--no-progress", "--on-error", "silent"],
                env=env,
                check=True,
                stderr=subprocess.DEVNULL,
            )
            produced = time.perf_counter()
            ends = end_offsets(bootstrap, TOPIC, PARTITIONS)
            events = sum(ends.values())
            first_commit = None
            while True:
                done = committed_offsets(bootstrap, GROUP, TOPIC, PARTITIONS)
                now = time.perf_counter()
                if first_commit is None and any(o > 0 for o in done.values()):
                    first_commit = now
                if all(done.get(p, -1) >= end for p, end in ends.items()):
                    break
                time.sleep(0.1)
            finished = time.perf_counter()
            exported = subprocess.run(
                [BIN / "export-snapshot"], env=env, capture_output=True, check=True
            )
            if exported.stdout != expected:
                sys.exit(f"snapshot with {workers} worker(s) differs from process-csv")
            ceiling_s, ceiling_events = _ceiling(bootstrap)
            assert ceiling_events == events
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
    return Run(
        workers,
        produced - t0,
        finished - (first_commit or t0),
        finished - t0,
        ceiling_s,
        events,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = Path(tmp)
        csv = workdir / "in.csv"
        csv.write_text("".join(generate(args.rows, args.clients, args.seed)))
        expected = subprocess.run(
            [BIN / "process-csv", "--on-error", "silent", str(csv)],
            capture_output=True,
            check=True,
        ).stdout
        runs: list[Run] = []
        print(f"# {args.rows:,} rows, {args.clients:,} clients, {PARTITIONS} partitions")
        print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for i in range(args.runs):
            for workers in args.workers:  # interleaved, so drift hits every variant
                run = one_run(csv, expected, workers, workdir)
                runs.append(run)
                print(
                    f"run {i + 1} workers={workers}: produce {run.produce_s:.1f}s, "
                    f"work {run.work_s:.1f}s, e2e {run.e2e_s:.1f}s, "
                    f"ceiling {run.ceiling_s:.1f}s",
                    flush=True,
                )
        print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        _report(args.rows, runs, args.workers)


def _report(rows: int, runs: list[Run], worker_counts: list[int]) -> None:
    print()
    print(
        "| workers | produce-csv rows/s | workers events/s | per worker | "
        "e2e s | ceiling events/s | workers / ceiling |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for workers in worker_counts:
        mine = [r for r in runs if r.workers == workers]
        produce = statistics.median(rows / r.produce_s for r in mine)
        work = statistics.median(r.events / r.work_s for r in mine)
        ceiling = statistics.median(r.events / r.ceiling_s for r in mine)
        ratio = statistics.median((r.events / r.work_s) / (r.events / r.ceiling_s) for r in mine)
        e2e = statistics.median(r.e2e_s for r in mine)
        print(
            f"| {workers} | {produce:,.0f} | {work:,.0f} | {work / workers:,.0f} | "
            f"{e2e:.1f} | {ceiling:,.0f} | {ratio:.3f} |"
        )


if __name__ == "__main__":
    main()
