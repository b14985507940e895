"""Where a worker's time goes: py-spy on one worker catching up on a full topic.

    python -m bench.profile_worker [--rows 1000000 --clients 5000 --top 25]
                                   [--broker kafka|tansu] [--code DIR] [--idle] [--plain-input]

Starts a broker (Apache Kafka by default), publishes the seeded workload,
starts one worker and, from its first commit to lag 0, samples it with
py-spy (all threads, 200 Hz, raw folded stacks). Prints the share of samples
per thread, the top functions by own time and by inclusive time, and the
worker's own split of a batch (apply / send / confirm / commit seconds, from
its counts line). `--code DIR` runs the worker from another checkout (a git
worktree: PYTHONPATH), to compare two versions the same way; `--idle` also
samples threads that wait (where a thread waits is what a fetch stall
looks like); `--plain-input` publishes without the ingestion journal.
Needs py-spy (`pip install -e '.[bench]'`); py-spy may need ptrace rights.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_pipeline import BIN, PARTITIONS, TOPIC, lag_zero, worker_env
from bench.workload import generate
from embedded.broker import client_env, running_broker
from kafkaio.admin import committed_offsets, end_offsets, wait_for_broker

_LINE = re.compile(r":\d+\)")


def _profile(raw: Path, top: int, thread: str = "") -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if thread not in frames[0]:
            continue
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    print(f"{total} samples")
    print("\nby thread:")
    for name, n in threads.most_common(6):
        print(f"  {n / total:6.1%}  {name}")
    print("\ntop functions, own time:")
    for name, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {name}")
    print("\ntop functions, inclusive (below the event loop):")
    for name, n in inclusive.most_common(top + 20)[20:]:
        print(f"  {n / total:6.1%}  {name}")


def _thread_cpu(pid: int) -> None:
    """CPU seconds per thread name since the worker started (threads of one name summed)."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_name: collections.Counter[str] = collections.Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        by_name[name] += (int(fields[11]) + int(fields[12])) / ticks
    print("cpu s by thread: " + " ".join(f"{n}={s:.1f}" for n, s in by_name.most_common(6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--code", type=Path, help="run the worker from this checkout")
    parser.add_argument("--idle", action="store_true", help="sample waiting threads too")
    parser.add_argument("--thread", default="", help="only threads whose name contains this")
    parser.add_argument("--plain-input", action="store_true", help="publish without the journal")
    parser.add_argument(
        "--no-profile", action="store_true", help="only time it (py-spy slows a worker down)"
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install -e '.[bench]'")

    with tempfile.TemporaryDirectory(prefix="profile-worker-") as tmp:
        workdir = Path(tmp)
        csv = workdir / "in.csv"
        csv.write_text("".join(generate(args.rows, args.clients, args.seed)))
        with running_broker(log=workdir / "broker.log", engine=args.broker) as broker:
            bootstrap = broker.bootstrap
            wait_for_broker(bootstrap)
            env = {**worker_env(bootstrap, "ledger"), **client_env(args.broker)}
            # No worker has run yet to create the topic.
            argv = [str(BIN / "produce-csv"), "--no-progress", "--on-error", "silent"]
            with csv.open("rb") as rows:
                subprocess.run(
                    [*argv, "--create-topic", "-" if args.plain_input else str(csv)],
                    env=env,
                    stdin=rows if args.plain_input else subprocess.DEVNULL,
                    check=True,
                    stderr=subprocess.DEVNULL,
                )
            # Tansu's listed ends under-report (LEDGER_END_OFFSETS).
            ends = end_offsets(bootstrap, TOPIC, PARTITIONS, by_reading=args.broker == "tansu")
            if args.code is not None:
                env["PYTHONPATH"] = str(args.code)
            log = workdir / "worker.log"
            worker = subprocess.Popen(
                [BIN / "faust", "-A", "processor", "worker", "-l", "info"],
                env=env,
                cwd=workdir,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            try:
                while not any(
                    o > 0
                    for o in committed_offsets(bootstrap, "ledger", TOPIC, PARTITIONS).values()
                ):
                    time.sleep(0.05)
                raw = workdir / "profile.raw"
                record = ["record", "-p", str(worker.pid), "-r", "200", "-f", "raw", "--threads"]
                # Not pausing the worker per sample: with its ~50 threads, pausing
                # made a 10 s catch-up take 47 s (measured).
                record.append("--nonblocking")
                if args.idle:
                    record.append("--idle")
                sampler = None
                if not args.no_profile:
                    sampler = subprocess.Popen(
                        [spy, *record, "-o", str(raw), "-d", "600"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                started = time.perf_counter()
                while not lag_zero(bootstrap, "ledger", ends):
                    time.sleep(0.05)
                how = "not sampled" if sampler is None else "sampled"
                print(f"first commit to lag 0: {time.perf_counter() - started:.1f}s ({how})")
                _thread_cpu(worker.pid)
                if sampler is not None:
                    sampler.send_signal(2)
                    sampler.wait(timeout=60)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            warnings = []
            for line in log.read_text(errors="replace").splitlines():
                if "at stop:" in line:
                    print("worker", line.split("at stop:", 1)[1].strip())
                if "[WARNING]" in line or "[ERROR]" in line:
                    warnings.append(line)
            print(f"worker log: {len(warnings)} warnings and errors", *warnings[:5], sep="\n  ")
            if not args.no_profile:
                _profile(raw, args.top, args.thread)


if __name__ == "__main__":
    main()
