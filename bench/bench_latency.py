"""End-to-end latency at a steady produce rate: from producing a row to its committed effect.

    python -m bench.bench_latency [--rates 1000 10000 50000] [--seconds 10] [--warmup 2]
                                  [--runs 1] [--broker kafka|tansu] [--workers 1]
                                  [--batch-size N] [--clients 10000] [--linger-ms 2]
                                  [--prime SECONDS] [--broker-config KEY=VALUE]

What is measured: for every input event, the time from the moment it is
handed to the producer to the moment its effect is visible to a
read_committed reader of the state. Each worker batch of input partition p
is one Kafka transaction on the changelogs that ends with p's position
record (`#position:<p>` -> `{"next_offset": n}`, processor.state), in
changelog partition p: once a committed position record of p with
next_offset > o is visible, the event at offset o of `transactions`[p] is
in the state a reader sees (export-snapshot reads exactly that).

How, per run (a fresh broker each run, `--broker`):

1. N workers (`faust -A processor worker`, started as bench.bench_pipeline
   starts them; LEDGER_BATCH_SIZE from `--batch-size` if given) start and
   are all ready (/readyz: partitions assigned, tables recovered).
2. A tail reader starts in its own process (so it does not share the GIL
   with the producer): a confluent-kafka consumer with
   isolation.level=read_committed on `<app id>-accounts-changelog`, from the
   end of every partition. It prints, for every position record, its
   partition, next_offset and the wall time (time.time()) it was handed out.
3. A probe of a few hundred rows is produced and the bench waits until the
   reader has seen it committed on every partition it went to: the whole
   chain works before anything is timed.
4. For each rate R: the rows (bench.workload, clean, pre-generated and
   encoded before timing exactly as produce-csv encodes them: keyed by
   client, orjson values, the same producer settings and murmur2
   partitioner, except linger.ms, `--linger-ms`) are produced at R events/s
   for warm-up + seconds: every ~1 ms the loop sends the events due by then,
   so the average rate is exact as long as the producer keeps up. Each
   event's send time is the wall time of its burst; its partition and
   offset come from its delivery report. Once every event is visible
   (before the next rate starts), its latency is the first time a position
   record of its partition with next_offset > its offset was seen, minus its
   send time. Events sent during the warm-up are left out.

`--prime S` first produces S seconds at 10,000 events/s, unmeasured, and
waits until all of it is visible: each run starts a new broker JVM, whose
JIT compiler threads are busy for minutes (14-27 s of CPU in a 70-100 s
run, measured on 2 cores), which a broker in service is not.

`--broker-config KEY=VALUE` sets an Apache Kafka broker property for every
run's broker: to measure what one of its defaults costs (session 10:
`transaction.partition.verification.enable=false`, bench/README.md), not
to tune the product's figures.

Reported per rate: the rate achieved over the measured window (less than R
means the producer, on this machine, could not keep up), the events
measured, and p50, p99 and max latency in ms (medians over runs). All
processes share one machine and one wall clock; the reader's own fetch
round trip (fetch.wait.max.ms, below) is part of every figure, as it is for
any real reader. Tansu serves records of aborted transactions to
read_committed readers too; no batch aborts in a steady run, so that
changes nothing here.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.bench_pipeline import BIN, PARTITIONS, TOPIC, all_ready
from bench.bench_pipeline import worker_env as pipeline_worker_env
from bench.workload import generate
from embedded.broker import client_env, running_broker
from embedded.ports import free_port
from kafkaio.admin import wait_for_broker
from kafkaio.settings import Settings
from ledger import read_rows
from ledger.messages import to_message
from processor.state import decode_position, is_position_key
from producers.csv_producer import producer_config

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "ledger"
#: Rows of the probe that proves the chain works before anything is timed.
PROBE_ROWS = 400
#: Seconds between two bursts of the paced producer.
BURST_S = 0.001
#: Events/s of the unmeasured load before the first rate (`--prime`).
PRIME_RATE = 10_000
#: Seconds to wait for the last event of a rate to become visible.
DRAIN_TIMEOUT_S = 120.0


@dataclass
class Result:
    rate: int
    achieved: float
    events: int
    unseen: int
    p50_ms: float
    p99_ms: float
    max_ms: float


# --- the workers, as bench.bench_pipeline starts them ------------------------------------


def worker_env(bootstrap: str, app_id: str, batch_size: int | None) -> dict[str, str]:
    """bench.bench_pipeline's worker environment, plus LEDGER_BATCH_SIZE if given."""
    env = pipeline_worker_env(bootstrap, app_id)
    if batch_size is not None:
        env["LEDGER_BATCH_SIZE"] = str(batch_size)
    return env


def start_workers(
    env: dict[str, str], workers: int, workdir: Path
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """Start the workers, each with its web server (for /readyz) on a free port."""
    procs, ports = [], []
    for n in range(workers):
        log = open(workdir / f"worker-{n}.log", "wb")  # noqa: SIM115
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
        log.close()  # the child has its own copy
    return procs, ports


def wait_until_ready(
    ports: list[int], procs: list[subprocess.Popen[bytes]], workdir: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not all_ready(ports):
        check_workers(procs, workdir)
        if time.monotonic() > deadline:
            show_logs(workdir)
            sys.exit(f"workers not ready after {timeout:.0f}s")
        time.sleep(0.2)


def check_workers(procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    for proc in procs:
        if proc.poll() is not None:
            show_logs(workdir)
            sys.exit(f"a worker exited with {proc.returncode}")


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def show_logs(workdir: Path, lines: int = 15) -> None:
    for log in sorted(workdir.glob("worker-*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- {log.name} (last {lines} lines)", *text, sep="\n", file=sys.stderr)


# --- the tail reader (its own process) ---------------------------------------------------


def tail(bootstrap: str, topic: str, partitions: int) -> None:
    """Print `partition next_offset wall_time` for every committed position record from now on."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency-tail",  # required; nothing is committed
            "enable.auto.commit": False,
            # As the exporter reads (embedded.broker.client_env: Tansu's
            # read_committed is broken, its clients read read_uncommitted).
            "isolation.level": os.environ.get("LEDGER_ISOLATION_LEVEL", "read_committed"),
            # How long the broker may hold a fetch that has no data (default
            # 500 ms). Kafka answers a held fetch as soon as data arrives; a
            # short wait bounds what this reader adds where a broker does not.
            "fetch.wait.max.ms": 10,
            "fetch.error.backoff.ms": 10,
            # The changelog carries every account write (~1 per event): as in
            # bench_pipeline's ceiling reader, librdkafka's default queue
            # thresholds would back off fetches for a second at a time.
            "queued.min.messages": 2_000_000,
            "queued.max.messages.kbytes": 1_000_000,
            "fetch.queue.backoff.ms": 5,
        }
    )
    starts = []
    for p in range(partitions):
        # The end now (Tansu under-reports it a little: a few old records are
        # read again, with positions no event of this bench is waiting for).
        _low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10, cached=False
        )
        starts.append(TopicPartition(topic, p, high))
    consumer.assign(starts)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    try:
        while True:
            first = consumer.poll(0.5)
            if first is None:
                continue
            now = time.time()
            # poll() returns at the first record; the rest already fetched, without waiting.
            lines = []
            for message in [first, *consumer.consume(100_000, timeout=0)]:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"tail: {error}", file=sys.stderr, flush=True)
                    continue
                key = message.key()
                if key is not None and is_position_key(key):
                    offset = decode_position(message.value() or b"")
                    lines.append(f"{message.partition()} {offset} {now:.6f}\n")
            if lines:
                out.write("".join(lines))
                out.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        consumer.close()


class Tail:
    """The tail reader's process and what it has printed so far (read by a thread)."""

    def __init__(self, bootstrap: str, topic: str, env: dict[str, str]) -> None:
        self.seen: list[list[tuple[int, float]]] = [[] for _ in range(PARTITIONS)]
        #: Per partition, the highest next_offset seen.
        self.high = [0] * PARTITIONS
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_latency",
                "--tail",
                bootstrap,
                topic,
                str(PARTITIONS),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            fields = line.split()
            if fields == [b"ready"]:
                self.ready.set()
                continue
            partition, next_offset, seen_at = int(fields[0]), int(fields[1]), float(fields[2])
            self.seen[partition].append((next_offset, seen_at))
            if next_offset > self.high[partition]:
                self.high[partition] = next_offset

    def wait_ready(self, timeout: float = 60) -> None:
        if not self.ready.wait(timeout):
            sys.exit(f"the tail reader was not ready after {timeout:.0f}s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._thread.join(timeout=5)


# --- the workload and the paced producer -------------------------------------------------


def encode_rows(rows: int, clients: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Keys and values of `rows` clean workload rows, encoded as produce-csv encodes them."""
    keys: list[bytes] = []
    values: list[bytes] = []
    lines = (line.encode() for line in generate(rows, clients, seed))

    def malformed(number: int, detail: str) -> None:
        raise AssertionError(f"clean workload row {number} is malformed: {detail}")

    dumps = orjson.dumps
    for number, kind, client, tx, amount in read_rows(lines, malformed):
        keys.append(str(client).encode())
        values.append(dumps(to_message(kind, client, tx, amount, number)))
    return keys, values


class Sent:
    """Per event of one phase: wall time sent, partition and offset (from its delivery report)."""

    def __init__(self, count: int) -> None:
        self.at = array("d", bytes(8 * count))
        self.partition = array("i", [-1]) * count
        self.offset = array("q", [-1]) * count
        self.failed: list[str] = []

    def delivered(self, index: int, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))
            return
        self.partition[index] = msg.partition()
        self.offset[index] = msg.offset()


def produce_paced(
    producer: Producer,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    first: int,
    count: int,
    rate: float,
) -> tuple[Sent, float]:
    """Send rows first..first+count at `rate`/s; return what was sent and the start (perf)."""
    sent = Sent(count)
    produce, poll, delivered, at = producer.produce, producer.poll, sent.delivered, sent.at
    perf, wall, sleep = time.perf_counter, time.time, time.sleep
    i = 0
    start = perf()
    while i < count:
        due = min(count, int((perf() - start) * rate) + 1)
        if due > i:
            now = wall()
            while i < due:
                row = first + i
                try:
                    produce(TOPIC, values[row], keys[row], on_delivery=partial(delivered, i))
                except BufferError:
                    poll(0.005)  # the local queue is full: the broker is behind
                    break
                at[i] = now
                i += 1
        poll(0)
        sleep(BURST_S)
    return sent, start


# --- one run --------------------------------------------------------------------------------


def wait_visible(
    tail_reader: Tail,
    ends: dict[int, int],
    procs: list[subprocess.Popen[bytes]],
    workdir: Path,
    timeout: float = DRAIN_TIMEOUT_S,
) -> bool:
    """Wait until every partition's position passes `ends` (its last offset sent + 1)."""
    deadline = time.monotonic() + timeout
    while any(tail_reader.high[p] < end for p, end in ends.items()):
        check_workers(procs, workdir)
        if tail_reader.process.poll() is not None:
            sys.exit(f"the tail reader exited with {tail_reader.process.returncode}")
        if time.monotonic() > deadline:
            behind = {p: (tail_reader.high[p], end) for p, end in ends.items()}
            print(f"# not visible after {timeout:.0f}s (seen, wanted): {behind}", flush=True)
            return False
        time.sleep(0.01)
    return True


def _ends(sent: Sent, indexes: range) -> dict[int, int]:
    ends: dict[int, int] = {}
    for i in indexes:
        p, offset = sent.partition[i], sent.offset[i]
        if p >= 0 and offset + 1 > ends.get(p, 0):
            ends[p] = offset + 1
    return ends


def latencies(sent: Sent, indexes: range, seen: list[list[tuple[int, float]]]) -> list[float]:
    """Seconds from send to the first visible position past the event, per visible event."""
    by_partition: dict[int, list[tuple[int, float]]] = {}
    for i in indexes:
        if sent.partition[i] >= 0:
            by_partition.setdefault(sent.partition[i], []).append((sent.offset[i], sent.at[i]))
    result: list[float] = []
    for p, events in by_partition.items():
        events.sort()
        j = 0
        for next_offset, seen_at in list(seen[p]):
            while j < len(events) and events[j][0] < next_offset:
                result.append(seen_at - events[j][1])
                j += 1
            if j == len(events):
                break
    return result


def _trace(sent: Sent, window: range, seen: list[list[tuple[int, float]]]) -> None:
    """Where the slowest events were: the longest waits between position records seen."""
    t0 = sent.at[window.start]
    gaps: list[tuple[float, int, float]] = []
    for p, positions in enumerate(seen):
        times = [at for _, at in positions if at >= t0]
        gaps += [(b - a, p, a - t0) for a, b in itertools.pairwise(times)]
    for gap, p, at in sorted(gaps, reverse=True)[:5]:
        print(f"    trace: partition {p}: no position for {gap * 1000:.0f} ms from +{at:.2f} s")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def one_run(
    args: argparse.Namespace, keys: list[bytes], values: list[bytes], workdir: Path
) -> list[Result]:
    results: list[Result] = []
    config = dict(args.broker_config)
    log = workdir / f"broker-{args.broker}.log"
    with running_broker(log=log, engine=args.broker, config=config) as broker:
        bootstrap = broker.bootstrap
        wait_for_broker(bootstrap)
        env = {**worker_env(bootstrap, APP_ID, args.batch_size), **client_env(args.broker)}
        settings = Settings.from_env(env)
        procs, ports = start_workers(env, args.workers, workdir)
        tail_reader: Tail | None = None
        producer: Producer | None = None
        try:
            wait_until_ready(ports, procs, workdir)
            tail_reader = Tail(bootstrap, settings.changelog_topic("accounts"), env)
            tail_reader.wait_ready()
            producer = Producer(
                {
                    **producer_config(settings),
                    "linger.ms": args.linger_ms,
                    # A report per event: its partition and offset.
                    "delivery.report.only.error": False,
                }
            )
            # The probe: the whole chain works (workers assigned, reader reading).
            probe, _ = produce_paced(producer, keys, values, 0, PROBE_ROWS, 1e9)
            producer.flush(60)
            if probe.failed:
                sys.exit(f"probe not delivered: {probe.failed[:3]}")
            if not wait_visible(tail_reader, _ends(probe, range(PROBE_ROWS)), procs, workdir):
                show_logs(workdir)
                sys.exit("the probe never became visible")
            first = PROBE_ROWS
            if args.prime:
                # Unmeasured load first: a new broker JVM spends minutes
                # compiling (its JIT threads took up to half a core for
                # the first ~70 s at 10k ev/s, measured), and a broker in
                # service has done that long ago.
                count = round(PRIME_RATE * args.prime)
                primed, _ = produce_paced(producer, keys, values, first, count, PRIME_RATE)
                first += count
                producer.flush(60)
                wait_visible(tail_reader, _ends(primed, range(count)), procs, workdir)
            for rate in args.rates:
                warm = round(rate * args.warmup)
                count = warm + round(rate * args.seconds)
                sent, start = produce_paced(producer, keys, values, first, count, rate)
                finished = time.perf_counter()
                first += count
                producer.flush(60)
                if sent.failed:
                    sys.exit(f"{len(sent.failed)} events not delivered: {sent.failed[:3]}")
                window = range(warm, count)
                wait_visible(tail_reader, _ends(sent, range(count)), procs, workdir)
                lat = sorted(latencies(sent, window, tail_reader.seen))
                # Achieved: the measured events over the time from the first
                # one's due moment to the end of the sending.
                measured_s = finished - (start + warm / rate)
                result = Result(
                    rate,
                    achieved=len(window) / measured_s,
                    events=len(lat),
                    unseen=len(window) - len(lat),
                    p50_ms=percentile(lat, 50) * 1000,
                    p99_ms=percentile(lat, 99) * 1000,
                    max_ms=(lat[-1] if lat else float("nan")) * 1000,
                )
                results.append(result)
                if args.trace:
                    _trace(sent, window, tail_reader.seen)
                print(
                    f"  {rate:,} ev/s: achieved {result.achieved:,.0f} ev/s, {result.events:,} "
                    f"events, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                    f"max {result.max_ms:.1f} ms"
                    + (f", {result.unseen:,} never visible" if result.unseen else ""),
                    flush=True,
                )
        finally:
            if producer is not None:
                producer.flush(10)
                producer = None  # destroyed now, while its broker still answers
            if tail_reader is not None:
                tail_reader.stop()
            stop_workers(procs)
    return results


def report(results: list[Result], rates: list[int]) -> None:
    print()
    print("| rate ev/s | achieved ev/s | events | p50 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        mine = [r for r in results if r.rate == rate]
        unseen = sum(r.unseen for r in mine)
        print(
            f"| {rate:,} | {statistics.median(r.achieved for r in mine):,.0f} | "
            f"{statistics.median(r.events for r in mine):,.0f}"
            + (f" ({unseen:,} never visible)" if unseen else "")
            + f" | {statistics.median(r.p50_ms for r in mine):.1f} | "
            f"{statistics.median(r.p99_ms for r in mine):.1f} | "
            f"{statistics.median(r.max_ms for r in mine):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per rate, not counted")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--prime",
        type=float,
        default=0.0,
        help=f"seconds of unmeasured load at {PRIME_RATE:,} ev/s first (warms the broker's JIT)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="print the longest waits between positions seen"
    )
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="kafka")
    parser.add_argument(
        "--broker-config",
        action="append",
        default=[],
        type=_property,
        metavar="KEY=VALUE",
        help="an Apache Kafka broker property (repeatable), e.g. to measure what a default costs",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="LEDGER_BATCH_SIZE of the workers")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--linger-ms", type=float, default=2.0, help="the producer's linger.ms")
    parser.add_argument(
        "--logs", type=Path, help="keep the broker and worker logs here (default: removed)"
    )
    parser.add_argument("--tail", nargs=3, help=argparse.SUPPRESS)  # the reader process
    args = parser.parse_args()
    if args.tail:
        tail(args.tail[0], args.tail[1], int(args.tail[2]))
        return

    rows = PROBE_ROWS + round(PRIME_RATE * args.prime)
    rows += sum(round(r * args.warmup) + round(r * args.seconds) for r in args.rates)
    keys, values = encode_rows(rows, args.clients, args.seed)
    print(
        f"# {args.broker}, {args.workers} worker(s), batch size "
        f"{args.batch_size or 'default'}, {PARTITIONS} partitions, {args.clients:,} clients, "
        f"linger.ms {args.linger_ms:g}, {args.seconds:g} s measured after {args.warmup:g} s "
        f"warm-up per rate"
        + (f", after {args.prime:g} s at {PRIME_RATE:,} ev/s unmeasured" if args.prime else "")
        + "".join(f", broker {k}={v}" for k, v in args.broker_config)
    )
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for i in range(args.runs):
            print(f"run {i + 1}:", flush=True)
            workdir = Path(tmp) if args.logs is None else args.logs / f"run-{i + 1}"
            workdir.mkdir(parents=True, exist_ok=True)
            results += one_run(args, keys, values, workdir)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(results, args.rates)


if __name__ == "__main__":
    main()
