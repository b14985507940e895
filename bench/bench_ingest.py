"""produce-csv with the ingestion journal against produce-csv without it, same broker, same run.

    python -m bench.bench_ingest [--rows 1000000] [--runs 5] [--broker kafka|tansu]
                                 [--intervals 1.0]

Each run starts a fresh broker, warms its transaction coordinator and
creates the journal topic with a 10-row journaled file, and publishes the
same seeded file (bench.workload, 5,000 clients, 8 partitions), each variant
to a topic of its own, interleaved:

- `plain`: `produce-csv - < file`: standard input without --source-id is not
  journaled, which is exactly the producer before the journal (idempotent,
  no transactions);
- `journal`: `produce-csv file --commit-interval S` for each S of --intervals:
  the file hashed, the journal read, rows and journal records in one Kafka
  transaction per S seconds.

Reported: rows/s per variant (rows over produce-csv's wall time, process
start to exit, hashing and journal set-up included), median over runs, and
each journal variant's same-run ratio to `plain` (median of per-run ratios).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.workload import generate
from embedded.broker import client_env, running_broker
from kafkaio.admin import wait_for_broker

BIN = Path(sys.executable).parent
PARTITIONS = 8


def produce(csv: Path, env: dict[str, str], topic: str, interval: float | None) -> float:
    argv = [str(BIN / "produce-csv"), "--no-progress", "--on-error", "silent", "--create-topic"]
    argv += ["--topic", topic]
    argv += ["-"] if interval is None else [str(csv), "--commit-interval", str(interval)]
    started = time.perf_counter()
    with csv.open("rb") as stdin:
        subprocess.run(
            argv,
            env=env,
            stdin=stdin if interval is None else subprocess.DEVNULL,
            check=True,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0])
    args = parser.parse_args()
    variants: list[float | None] = [None, *args.intervals]
    names = ["plain", *(f"journal {s:g}s" for s in args.intervals)]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        csv = Path(tmp) / "in.csv"
        csv.write_text("".join(generate(args.rows, 5_000, 1)))
        print(f"# {args.rows:,} rows, {PARTITIONS} partitions, broker {args.broker}")
        for run in range(args.runs):
            with running_broker(log=Path(tmp) / f"broker-{run}.log", engine=args.broker) as b:
                wait_for_broker(b.bootstrap)
                env = {**os.environ, **client_env(args.broker)}
                # One journal topic for every variant, as in service (it is
                # created once, by the warm-up), not one per input topic.
                env.update(
                    LEDGER_PARTITIONS=str(PARTITIONS),
                    KAFKA_BOOTSTRAP_SERVERS=b.bootstrap,
                    LEDGER_INGEST_TOPIC="bench-ingest",
                )
                # Warm-up, not measured: a broker in service has its
                # transaction coordinator loaded (__transaction_state); a
                # fresh one creates it on the first journaled run (~0.5 s).
                warm = Path(tmp) / f"warm-{run}.csv"
                warm.write_text("".join(generate(10, 5, run)))
                produce(warm, env, "warm-up", args.intervals[0])
                line = []
                for i, (name, interval) in enumerate(zip(names, variants, strict=True)):
                    s = produce(csv, env, f"in-{i}", interval)
                    seconds[name].append(s)
                    line.append(f"{name} {args.rows / s:,.0f} rows/s")
                print(f"run {run + 1}: " + ", ".join(line), flush=True)
    print()
    print("| variant | rows/s (median) | same-run ratio to plain (median) |")
    print("|---|---:|---:|")
    for name in names:
        rate = statistics.median(args.rows / s for s in seconds[name])
        ratio = statistics.median(
            p / s for p, s in zip(seconds["plain"], seconds[name], strict=True)
        )
        print(f"| {name} | {rate:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
