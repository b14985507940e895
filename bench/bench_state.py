"""State that scales (issue 13): restart, cold restore, memory, processing, at N deposits in state.

    python -m bench.bench_state [--deposits 1000000 3000000] [--runs 3] [--broker kafka]
                                [--baseline DIR --baseline-max 1000000]

For each N, each run: a fresh broker (Apache Kafka by default), N deposits
(unique tx ids, 5,000 clients) published with produce-csv, then one worker
(`faust -A processor worker`, its own data directory):

1. processing: from ready to lag 0, events/s (the worker catches up on the
   full topic), and its RSS at lag 0 (/proc);
2. restart on the same disk: SIGTERM, start again; seconds from the start of
   the process to /readyz 200, and the restore's own seconds and records
   read (the worker's /metrics: `ledger_state_restore_seconds`,
   `ledger_state_restored_records_total`); the rest is start-up and the
   group join;
3. cold restore: SIGTERM, the data directory deleted, start again; records
   read per second of restore, and seconds to ready.

With --baseline DIR (a checkout of the memory-store worker: `git worktree
add DIR <rev>`) the same steps run with that code in the same run, for N up
to --baseline-max (its restart reads every changelog record at ~4k/s, so
larger N take too long); its restart is its cold restore. Ratios against it
are per run, medians reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.bench_pipeline import (
    BIN,
    PARTITIONS,
    TOPIC,
    _produce,
    _start_workers,
    _stop,
    _wait_until_ready,
    lag_zero,
    worker_env,
)
from embedded.broker import client_env, running_broker
from kafkaio.admin import committed_offsets, end_offsets, ensure_topic, wait_for_broker

CLIENTS = 5_000


@dataclass
class Figures:
    code: str
    deposits: int
    events_per_s: float = 0.0
    rss_mb: float = 0.0
    restart_s: float = 0.0
    restart_restore_s: float = 0.0
    restart_records: float = 0.0
    cold_s: float = 0.0
    cold_restore_s: float = 0.0
    cold_records: float = 0.0
    #: kill -9 of one of two workers while input flows: seconds until every
    #: partition it owned commits again on the survivor, with and without standbys.
    #: The worker's data directory after the restart, bytes per deposit.
    disk_per_deposit: float = 0.0
    failover_s: float = 0.0
    failover_no_standby_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def cold_rate(self) -> float:
        return self.cold_records / self.cold_restore_s if self.cold_restore_s else 0.0


def _deposits_csv(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write("type,client,tx,amount\n")
        for tx in range(1, n + 1):
            f.write(f"deposit,{tx % CLIENTS + 1},{tx},1.5\n")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metrics(port: int) -> dict[str, float]:
    """Sum of each metric's samples on the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        body = answer.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def _start_and_time(
    env: dict[str, str], workdir: Path
) -> tuple[subprocess.Popen[bytes], int, float]:
    started = time.perf_counter()
    procs, ports = _start_workers(env, 1, workdir)
    _wait_until_ready(ports, timeout=3600)
    return procs[0], ports[0], time.perf_counter() - started


def _owned(port: int) -> list[int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return list(json.loads(answer.read())["partitions"])
    except OSError:
        return []


def _failover(env: dict[str, str], bootstrap: str, workdir: Path, standby: str) -> float:
    """Two workers; kill -9 one while rows flow; seconds until its partitions commit again."""
    env = {**env, "LEDGER_STANDBY_REPLICAS": standby}
    workdir.mkdir(parents=True, exist_ok=True)
    procs, ports = _start_workers(env, 2, workdir)
    try:
        _wait_until_ready(ports, timeout=3600)
        while not lag_zero(bootstrap, "state", end_offsets(bootstrap, TOPIC, PARTITIONS)):
            time.sleep(0.2)
        time.sleep(4)  # standbys catch up
        victim = _owned(ports[0])
        flow = workdir / "flow.csv"
        tx = 10**9
        stop = time.monotonic() + 60
        feeder = None

        def feed() -> subprocess.Popen[bytes]:
            nonlocal tx
            with flow.open("w") as f:
                f.write("type,client,tx,amount\n")
                for _ in range(2_000):
                    tx += 1
                    f.write(f"deposit,{tx % CLIENTS + 1},{tx},1.0\n")
            return subprocess.Popen(
                [str(BIN / "produce-csv"), str(flow), "--no-progress", "--force"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        feeder = feed()
        feeder.wait()
        at_kill = committed_offsets(bootstrap, "state", TOPIC, PARTITIONS)
        procs[0].kill()
        killed = time.perf_counter()
        feeder = feed()
        while time.monotonic() < stop:
            if feeder.poll() is not None:
                feeder = feed()
            done = committed_offsets(bootstrap, "state", TOPIC, PARTITIONS)
            if all(done.get(p, -1) > at_kill.get(p, -1) for p in victim):
                return time.perf_counter() - killed
            time.sleep(0.1)
        return float("nan")
    finally:
        procs[0].kill()
        _stop(procs[1:])


def one_run(csv: Path, n: int, engine: str, workdir: Path, baseline: Path | None) -> Figures:
    code = {} if baseline is None else {"PYTHONPATH": str(baseline)}
    figures = Figures("baseline" if baseline else "this", n)
    with running_broker(log=workdir / f"broker-{engine}.log", engine=engine) as broker:
        bootstrap = broker.bootstrap
        wait_for_broker(bootstrap)
        env = {**worker_env(bootstrap, "state"), **client_env(engine), **code}
        ensure_topic(bootstrap, TOPIC, PARTITIONS)
        _produce(csv, env, plain_input=False)
        ends = end_offsets(bootstrap, TOPIC, PARTITIONS, by_reading=engine == "tansu")

        # 1. Processing the whole topic, and the memory it leaves.
        proc, port, _ = _start_and_time(env, workdir)
        ready = time.perf_counter()
        while not lag_zero(bootstrap, "state", ends):
            time.sleep(0.1)
        figures.events_per_s = n / (time.perf_counter() - ready)
        time.sleep(2)  # an idle checkpoint of the local state
        figures.rss_mb = _rss_mb(proc.pid)
        _stop([proc])

        # 2. Restart on the same disk.
        proc, port, figures.restart_s = _start_and_time(env, workdir)
        m = _metrics(port)
        figures.restart_restore_s = m.get("ledger_state_restore_seconds", float("nan"))
        figures.restart_records = m.get("ledger_state_restored_records_total", float("nan"))
        _stop([proc])
        data = workdir / "ledger-data"
        if data.exists():
            figures.disk_per_deposit = (
                sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / n
            )

        # 3. Cold: the data directory gone (a new node).
        if baseline is None:
            shutil.rmtree(workdir / "ledger-data", ignore_errors=True)
            proc, port, figures.cold_s = _start_and_time(env, workdir)
            m = _metrics(port)
            figures.cold_restore_s = m.get("ledger_state_restore_seconds", 0.0)
            figures.cold_records = m.get("ledger_state_restored_records_total", 0.0)
            _stop([proc])
            if engine == "kafka":  # standbys follow the group's member list
                figures.failover_s = _failover(env, bootstrap, workdir / "f1", "1")
                figures.failover_no_standby_s = _failover(env, bootstrap, workdir / "f0", "0")
        else:
            figures.cold_s = figures.restart_s
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deposits", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--baseline", type=Path, help="a checkout of the memory-store worker")
    parser.add_argument("--baseline-max", type=int, default=1_000_000)
    args = parser.parse_args()
    results: list[Figures] = []
    for n in args.deposits:
        with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
            csv = Path(tmp) / "deposits.csv"
            _deposits_csv(csv, n)
            for run in range(1, args.runs + 1):
                codes: list[Path | None] = [None]
                if args.baseline is not None and n <= args.baseline_max:
                    codes.append(args.baseline)
                for code in codes:
                    workdir = Path(tmp) / f"run-{run}-{'base' if code else 'this'}"
                    workdir.mkdir()
                    f = one_run(csv, n, args.broker, workdir, code)
                    results.append(f)
                    print(
                        f"{n:,} deposits run {run} {f.code}: {f.events_per_s:,.0f} events/s, "
                        f"RSS {f.rss_mb:.0f} MB, disk {f.disk_per_deposit:.0f} B/deposit; "
                        f"restart {f.restart_s:.1f}s to ready "
                        f"(restore {f.restart_restore_s:.2f}s, {f.restart_records:,.0f} records); "
                        f"cold {f.cold_s:.1f}s to ready (restore {f.cold_restore_s:.1f}s, "
                        f"{f.cold_records:,.0f} records, {f.cold_rate:,.0f}/s); failover "
                        f"{f.failover_s:.1f}s with a standby, "
                        f"{f.failover_no_standby_s:.1f}s without",
                        flush=True,
                    )
    _report(results)


def _report(results: list[Figures]) -> None:
    print(
        "\n| deposits | code | events/s | RSS MB | restart to ready s | restore s (records) "
        "| cold to ready s | cold restore records/s | failover s: standby / none |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(f.deposits, f.code) for f in results}, key=lambda k: (k[0], k[1] != "this"))
    med = statistics.median
    for n, code in keys:
        fs = [f for f in results if (f.deposits, f.code) == (n, code)]
        print(
            f"| {n:,} | {code} | {med(f.events_per_s for f in fs):,.0f} | "
            f"{med(f.rss_mb for f in fs):.0f} | {med(f.restart_s for f in fs):.1f} | "
            f"{med(f.restart_restore_s for f in fs):.2f} "
            f"({med(f.restart_records for f in fs):,.0f}) "
            f"| {med(f.cold_s for f in fs):.1f} | {med(f.cold_rate for f in fs):,.0f} | "
            f"{med(f.failover_s for f in fs):.1f} / "
            f"{med(f.failover_no_standby_s for f in fs):.1f} |"
        )
    for n in sorted({f.deposits for f in results}):
        mine = [f for f in results if f.deposits == n and f.code == "this"]
        base = [f for f in results if f.deposits == n and f.code == "baseline"]
        if base:
            ratio = med(a.events_per_s / b.events_per_s for a, b in zip(mine, base, strict=True))
            rss = med(a.rss_mb / b.rss_mb for a, b in zip(mine, base, strict=True))
            restart = med(b.restart_s / a.restart_s for a, b in zip(mine, base, strict=True))
            print(
                f"\n{n:,} deposits, same-run ratios this/baseline (medians): "
                f"events/s {ratio:.2f}x, "
                f"RSS {rss:.2f}x; restart {restart:.1f}x faster"
            )


if __name__ == "__main__":
    main()
