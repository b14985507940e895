"""Where a worker's time goes: py-spy on one worker catching up on a full topic.

    python -m bench.profile_worker [--rows 1000000 --clients 5000 --top 25]

Starts the embedded broker, publishes the seeded workload, starts one worker
and, from its first commit to lag 0, samples it with py-spy (all threads,
200 Hz, raw folded stacks). Prints the share of samples per thread, the top
functions by own time and by inclusive time, and the worker's own split of a
batch (apply / send / confirm / commit seconds, from its counts line).
Needs py-spy (`pip install -e '.[bench]'`); py-spy may need ptrace rights.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_pipeline import BIN, PARTITIONS, TOPIC, lag_zero, worker_env
from bench.workload import generate
from embedded.broker import running_broker
from kafkaio.admin import committed_offsets, end_offsets, wait_for_broker

_LINE = re.compile(r":\d+\)")


def _profile(raw: Path, top: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install -e '.[bench]'")

    with tempfile.TemporaryDirectory(prefix="profile-worker-") as tmp:
        workdir = Path(tmp)
        csv = workdir / "in.csv"
        csv.write_text("".join(generate(args.rows, args.clients, args.seed)))
        with running_broker(log=workdir / "broker.log") as broker:
            bootstrap = broker.bootstrap
            wait_for_broker(bootstrap)
            env = worker_env(bootstrap, "ledger")
            subprocess.run(
                [
                    BIN / "produce-csv",
                    str(csv),
                    "--no-progress",
                    "--on-error",
                    "silent",
                    # No worker has run yet to create it.
                    "--create-topic",
                ],
                env=env,
                check=True,
                stderr=subprocess.DEVNULL,
            )
            # The embedded Tansu: its listed ends under-report (LEDGER_END_OFFSETS).
            ends = end_offsets(bootstrap, TOPIC, PARTITIONS, by_reading=True)
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
                sampler = subprocess.Popen(
                    [spy, *record, "-o", str(raw), "-d", "600"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                started = time.perf_counter()
                while not lag_zero(bootstrap, "ledger", ends):
                    time.sleep(0.05)
                print(f"first commit to lag 0: {time.perf_counter() - started:.1f}s (sampled)")
                sampler.send_signal(2)
                sampler.wait(timeout=60)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            for line in log.read_text(errors="replace").splitlines():
                if "at stop:" in line:
                    print("worker", line.split("at stop:", 1)[1].strip())
            _profile(raw, args.top)


if __name__ == "__main__":
    main()
