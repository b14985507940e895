"""The Kafka pipeline on either broker: producer, workers, end to end, and the ceiling.

    python -m bench.bench_pipeline [--rows 1000000 --clients 5000 --runs 3 --workers 1 2]
                                   [--broker tansu kafka]

Each run starts a fresh broker of each engine asked for (Tansu, memory
storage; Apache Kafka, a new data directory) and measures, for N worker
replicas (`faust -A processor worker`):

1. End to end, as in real use: the N workers join their group (all ready), then
   produce-csv publishes the file while they consume (all share the 2 cores).
   Timed: produce-csv from start to exit, then from its exit to lag 0 (every
   partition's committed offset at its end); e2e is the sum.
2. Worker throughput, catching up: N new workers of a second app id (their
   own consumer group and changelogs) start on the now full topic. Timed from
   the moment all N workers are ready together (/readyz: assigned, tables
   recovered, no rebalance) to lag 0; the rate counts the events committed
   in that time (not those committed before the clock started). Also recorded: the
   workers' and the broker's CPU seconds in that time (from /proc), the
   changelog records written per event, and each worker's time split
   (fetch wait, apply, send, confirm, commit) from its log.
3. The ceiling, in the same run: a plain confluent-kafka consumer reading the
   whole topic and decoding every value (orjson): what any Python consumer of
   this topic costs before doing any work.

Both snapshots are exported and compared with `process-csv` on the same file;
a mismatch fails the benchmark. Medians over runs; the worker figure also as
a ratio to the ceiling of the same run, because this machine is noisy. With
both brokers, runs interleave broker and worker count, so drift hits every
variant; one broker runs at a time (a JVM beside Tansu would share the cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.workload import generate
from embedded.broker import client_env, running_broker
from embedded.ports import free_port
from kafkaio.admin import committed_offsets, end_offsets, wait_for_broker

BIN = Path(sys.executable).parent
PARTITIONS = 8
TOPIC = "transactions"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    broker: str
    workers: int
    #: "this" (the checkout) or "baseline" (--baseline DIR, in the same run)
    code: str
    produce_s: float
    drain_s: float
    catchup_s: float
    catchup_events: int
    catchup_cpu_s: float
    broker_cpu_s: float
    changelog_records: int
    ceiling_s: float
    events: int
    #: Catch-up workers' seconds per step of a batch, summed over the workers
    #: (from each worker's "at stop" log line; whole life, not just the timed window).
    steps: dict[str, float]

    @property
    def e2e_s(self) -> float:
        return self.produce_s + self.drain_s

    @property
    def rate(self) -> float:
        return self.catchup_events / self.catchup_s


def worker_env(bootstrap: str, app_id: str) -> dict[str, str]:
    """The environment of the workers and tools of one app id (also bench.profile_worker)."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        LEDGER_APP_ID=app_id,
        LEDGER_PARTITIONS=str(PARTITIONS),
        LEDGER_SESSION_TIMEOUT="6",
        LEDGER_HEARTBEAT_INTERVAL="1",
        LEDGER_REQUEST_TIMEOUT="10",
        LEDGER_WEB_PORT="0",
        # The worker logs its time split once, at info, when it stops
        # (processor.agent); rejected rows (15% of the workload) stay out of
        # the log: one line each is not what is measured.
        LEDGER_LOG_LEVEL="info",
        LEDGER_REJECTS_LOG_LEVEL="warning",
    )
    return env


def all_ready(ports: list[int]) -> bool:
    """Every worker's /readyz says 200: partitions assigned, tables recovered, no rebalance."""
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                pass  # 200; a 503 raises
        except OSError:  # HTTPError (503), refused (not up yet), timeout
            return False
    return True


def _wait_until_ready(ports: list[int], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all_ready(ports):
        if time.monotonic() > deadline:
            sys.exit(f"workers not ready after {timeout:.0f}s")
        time.sleep(0.2)


def _ceiling(bootstrap: str) -> tuple[float, int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-ceiling",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # librdkafka's defaults stall this reader: a fetch from Tansu
            # returns up to ~60k records per partition, which overflows the
            # local queue (queued.min.messages 100k), and every overflow
            # costs a 1 s fetch back-off. Measured: 143k/s with the
            # defaults, ~390k/s with these.
            "queued.min.messages": 2_000_000,
            "queued.max.messages.kbytes": 1_000_000,
            "fetch.queue.backoff.ms": 5,
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


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _start_workers(
    env: dict[str, str], workers: int, workdir: Path
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """Start the workers, each with its web server (for /readyz) on a free port."""
    procs, ports = [], []
    for n in range(workers):
        log = open(workdir / f"worker-{env['LEDGER_APP_ID']}-{n}.log", "wb")  # noqa: SIM115
        ports.append(free_port())
        procs.append(
            subprocess.Popen(
                [BIN / "faust", "-A", "processor", "worker", "-l", "info"],
                env={**env, "LEDGER_WEB_PORT": str(ports[-1])},
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs, ports


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def _export(env: dict[str, str], expected: bytes, what: str) -> None:
    exported = subprocess.run([BIN / "export-snapshot"], env=env, capture_output=True, check=True)
    if exported.stdout != expected:
        sys.exit(f"{what}: the snapshot differs from process-csv")


def one_run(
    csv: Path,
    expected: bytes,
    workers: int,
    workdir: Path,
    engine: str,
    baseline: Path | None = None,
    plain_input: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """One measurement; with `baseline`, workers and exporter run that checkout's code.

    `extra_env`: settings for this checkout's workers only (--worker-env).
    """
    code = {"PYTHONPATH": str(baseline)} if baseline is not None else dict(extra_env or {})
    with running_broker(log=workdir / f"broker-{engine}.log", engine=engine) as broker:
        bootstrap = broker.bootstrap
        assert broker.process is not None
        broker_pid = broker.process.pid
        wait_for_broker(bootstrap)

        # 1. End to end: workers first, then the producer.
        env = {**worker_env(bootstrap, "ledger"), **client_env(engine), **code}
        procs, ports = _start_workers(env, workers, workdir)
        try:
            _wait_until_ready(ports)
            t0 = time.perf_counter()
            _produce(csv, env, plain_input)
            produced = time.perf_counter()
            ends = end_offsets(bootstrap, TOPIC, PARTITIONS, by_reading=engine == "tansu")
            events = sum(ends.values())
            while not lag_zero(bootstrap, "ledger", ends):
                time.sleep(0.1)
            drained = time.perf_counter()
            _export(env, expected, f"end to end, {workers} worker(s)")
        finally:
            _stop(procs)

        # 2. Catching up: new workers, their own group and tables, a full topic.
        env = {**worker_env(bootstrap, "catchup"), **client_env(engine), **code}
        procs, ports = _start_workers(env, workers, workdir)
        try:
            first = None
            while True:
                done = committed_offsets(bootstrap, "catchup", TOPIC, PARTITIONS)
                # The clock starts once all N workers are ready together
                # (assigned, tables recovered, no rebalance): what is
                # committed by then is not counted. A group often forms in
                # two steps on Tansu (one worker takes every partition, a
                # rebalance when the next joins); without the readiness
                # check the second join was timed as if 2 workers were slow
                # (measured: 1.15 instead of 1.7 cores busy). Until session
                # 8 the clock also waited for a commit on every partition:
                # a worker that takes its partitions one after another (the
                # batch worker's fetches do) was then timed over its last
                # seconds only, the tail where partitions finish one by one,
                # and came out at 0.55x of a worker that interleaves them
                # when both ran at ~100k events/s from ready to lag 0.
                if first is None and all_ready(ports):
                    done = committed_offsets(bootstrap, "catchup", TOPIC, PARTITIONS)
                    first, first_done = time.perf_counter(), sum(max(o, 0) for o in done.values())
                    cpu_at_first = _cpu_seconds([p.pid for p in procs])
                    broker_at_first = _cpu_seconds([broker_pid])
                if all(done.get(p, -1) >= end for p, end in ends.items()):
                    break
                time.sleep(0.05)
            assert first is not None
            cpu = _cpu_seconds([p.pid for p in procs]) - cpu_at_first
            broker_cpu = _cpu_seconds([broker_pid]) - broker_at_first
            finished = time.perf_counter()
            changelogs = sum(
                sum(
                    end_offsets(
                        bootstrap,
                        f"catchup-{table}-changelog",
                        PARTITIONS,
                        by_reading=engine == "tansu",
                    ).values()
                )
                for table in ("accounts", "deposits")
            )
            _export(env, expected, f"catching up, {workers} worker(s)")
        finally:
            _stop(procs)
        steps = _steps(workdir, "catchup", workers)

        ceiling_s, ceiling_events = _ceiling(bootstrap)
        # Offsets count produce-csv's transaction markers too (one per
        # partition per commit, about a second apart): a few dozen here.
        assert events - 1_000 <= ceiling_events <= events, (ceiling_events, events)
    return Run(
        engine,
        workers,
        "this" if baseline is None else "baseline",
        produce_s=produced - t0,
        drain_s=drained - produced,
        catchup_s=finished - first,
        catchup_events=events - first_done,
        catchup_cpu_s=cpu,
        broker_cpu_s=broker_cpu,
        changelog_records=changelogs,
        ceiling_s=ceiling_s,
        events=events,
        steps=steps,
    )


def _produce(csv: Path, env: dict[str, str], plain_input: bool) -> None:
    """produce-csv the file; with `plain_input`, from standard input: not journaled.

    A journaled publication writes in transactions (commit markers on the
    input); standard input without --source-id is published as before the
    journal, so the two inputs can be told apart from the two codes.
    """
    argv = [str(BIN / "produce-csv"), "--no-progress", "--on-error", "silent"]
    with csv.open("rb") as stdin:
        subprocess.run(
            [*argv, "-"] if plain_input else [*argv, str(csv)],
            env=env,
            stdin=stdin if plain_input else subprocess.DEVNULL,
            check=True,
            stderr=subprocess.DEVNULL,
        )


def _steps(workdir: Path, app_id: str, workers: int) -> dict[str, float]:
    """Sum the `<step>_s=` figures of the workers' "at stop" lines."""
    total: dict[str, float] = {}
    for n in range(workers):
        log = (workdir / f"worker-{app_id}-{n}.log").read_text(errors="replace")
        lines = [line for line in log.splitlines() if "at stop:" in line]
        for field in lines[-1].split() if lines else []:
            name, _, value = field.partition("=")
            if name.endswith("_s"):
                total[name[:-2]] = total.get(name[:-2], 0.0) + float(value)
    return total


def lag_zero(bootstrap: str, group: str, ends: dict[int, int]) -> bool:
    done = committed_offsets(bootstrap, group, TOPIC, PARTITIONS)
    return all(done.get(p, -1) >= end for p, end in ends.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--broker",
        nargs="+",
        choices=("tansu", "kafka"),
        default=(os.environ.get("BROKER") or "tansu").split(),
        help="tansu, kafka or both (default: $BROKER, else tansu)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add DIR REV): its workers are "
        "measured too, interleaved, and reported as a ratio to this checkout's",
    )
    parser.add_argument(
        "--plain-input",
        action="store_true",
        help="publish from standard input (not journaled: no transactions on the input), "
        "for every code measured; by default this checkout publishes journaled",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for this checkout's workers only (not the baseline's), e.g. "
        "LEDGER_STANDBY_REPLICAS=0; repeatable",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.worker_env)
    if extra:
        print(f"# this checkout's workers also run with {extra}")

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
            # interleaved, so drift hits every variant
            codes: list[Path | None] = [None] if args.baseline is None else [None, args.baseline]
            variants = [(e, w, c) for e in args.broker for w in args.workers for c in codes]
            for engine, workers, baseline in variants:
                run = one_run(
                    csv, expected, workers, workdir, engine, baseline, args.plain_input, extra
                )
                runs.append(run)
                print(
                    f"run {i + 1} {engine} {run.code} workers={workers}: "
                    f"produce {run.produce_s:.1f}s + drain "
                    f"{run.drain_s:.1f}s = e2e {run.e2e_s:.1f}s; catch-up {run.rate:,.0f} "
                    f"events/s, cpu {run.catchup_cpu_s / run.catchup_s:.2f} cores "
                    f"(broker {run.broker_cpu_s / run.catchup_s:.2f}), "
                    f"{run.changelog_records / run.events:.3f} changelog records/event; "
                    f"ceiling {run.events / run.ceiling_s:,.0f}/s; worker s (all workers): "
                    + " ".join(f"{k} {v:.1f}" for k, v in run.steps.items()),
                    flush=True,
                )
        print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        _report(args.rows, [r for r in runs if r.code == "this"], args.workers, args.broker)
        if args.baseline is not None:
            _versus_baseline(runs, args.workers, args.broker)


def _versus_baseline(runs: list[Run], worker_counts: list[int], engines: list[str]) -> None:
    """This checkout's catch-up rate over the baseline's, run by run (they interleave)."""
    print()
    print("| broker | workers | events/s this | events/s baseline | this / baseline (same run) |")
    print("|---|---:|---:|---:|---:|")
    for engine, workers in [(e, w) for e in engines for w in worker_counts]:
        mine = [r for r in runs if (r.broker, r.workers, r.code) == (engine, workers, "this")]
        base = [r for r in runs if (r.broker, r.workers, r.code) == (engine, workers, "baseline")]
        ratio = statistics.median(r.rate / b.rate for r, b in zip(mine, base, strict=True))
        print(
            f"| {engine} | {workers} | {statistics.median(r.rate for r in mine):,.0f} | "
            f"{statistics.median(r.rate for r in base):,.0f} | {ratio:.2f}x |"
        )


def _report(rows: int, runs: list[Run], worker_counts: list[int], engines: list[str]) -> None:
    print()
    print(
        "| broker | workers | events/s (catch-up) | per worker | vs 1 worker (same run) | "
        "worker CPU cores | broker CPU cores | "
        "changelog records/event | ceiling events/s | workers / ceiling | "
        "produce-csv rows/s | e2e s (produce + drain) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = worker_counts[0]
    for engine, workers in [(e, w) for e in engines for w in worker_counts]:
        mine = [r for r in runs if r.workers == workers and r.broker == engine]
        base = [r for r in runs if r.workers == first and r.broker == engine]
        rate = statistics.median(r.rate for r in mine)
        # Against the first configuration of the same run (runs interleave).
        versus = statistics.median(r.rate / b.rate for r, b in zip(mine, base, strict=True))
        cores = statistics.median(r.catchup_cpu_s / r.catchup_s for r in mine)
        broker = statistics.median(r.broker_cpu_s / r.catchup_s for r in mine)
        records = statistics.median(r.changelog_records / r.events for r in mine)
        ceiling = statistics.median(r.events / r.ceiling_s for r in mine)
        ratio = statistics.median(r.rate / (r.events / r.ceiling_s) for r in mine)
        produce = statistics.median(rows / r.produce_s for r in mine)
        e2e = statistics.median(r.e2e_s for r in mine)
        split = f"{statistics.median(r.produce_s for r in mine):.1f} + "
        split += f"{statistics.median(r.drain_s for r in mine):.1f}"
        print(
            f"| {engine} | {workers} | {rate:,.0f} | {rate / workers:,.0f} | {versus:.2f}x | "
            f"{cores:.2f} | {broker:.2f} | {records:.3f} | {ceiling:,.0f} | {ratio:.3f} | "
            f"{produce:,.0f} | "
            f"{e2e:.1f} ({split}) |"
        )


if __name__ == "__main__":
    main()
