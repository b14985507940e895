"""The balance API under load (issue 16): requests/s and latency, and what it costs processing.

    python -m bench.bench_api [--runs 3] [--deposits 2000000] [--window 4] [--concurrency 8]

Each run: a fresh Apache Kafka, N deposits (5,000 clients) published with
produce-csv, then two workers, A and B, started together (each with its
web server), which split the partitions and catch up on the topic. While
they catch up, back-to-back windows of `--window` seconds rotate between:

- `none`: no requests;
- `owner`: `GET /accounts/{client}` to A for clients of A's partitions
  (A answers from its own state);
- `forwarded`: the same clients, asked of B (B forwards to A and relays).

For each window: A's events applied per second (its /metrics), requests
answered per second, and the latency of each request (p50, p99), from a
client with `--concurrency` requests in flight. Once both workers are idle
(lag 0), one more `owner` and `forwarded` window each: the API on an idle
replica. Ratios are per run (a load window against the `none` windows of
the same catch-up), medians over runs. Client, workers and broker share the
machine's cores: the client's own CPU is part of what the windows cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.bench_pipeline import (
    PARTITIONS,
    TOPIC,
    _produce,
    _start_workers,
    _stop,
    _wait_until_ready,
    lag_zero,
    worker_env,
)
from bench.bench_state import CLIENTS, _deposits_csv, _metrics, _owned
from embedded.broker import client_env, running_broker
from kafkaio.admin import end_offsets, ensure_topic, wait_for_broker
from ledger.keys import client_key, partition_for

KINDS = ("none", "owner", "forwarded")


@dataclass
class Window:
    kind: str
    busy: bool  # while the workers catch up (False: idle, lag 0)
    events_per_s: float
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _hammer(urls: list[str], seconds: float, concurrency: int, window: Window) -> None:
    """Requests back to back from `concurrency` tasks for `seconds`, round robin over `urls`."""
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(start: int) -> None:
            i = start
            while time.perf_counter() < stop:
                url = urls[i % len(urls)]
                i += concurrency
                began = time.perf_counter()
                async with session.get(url) as answer:
                    await answer.read()
                    if answer.status != 200:
                        window.errors += 1
                        continue
                window.latencies.append(time.perf_counter() - began)
                window.requests += 1

        began = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(concurrency)))
        window.seconds = time.perf_counter() - began


def _window(
    kind: str, busy: bool, port_a: int, urls: dict[str, list[str]], seconds: float, c: int
) -> Window:
    before, t0 = _metrics(port_a).get("ledger_events_applied_total", 0.0), time.perf_counter()
    window = Window(kind, busy, 0.0)
    if kind == "none":
        time.sleep(seconds)
    else:
        asyncio.run(_hammer(urls[kind], seconds, c, window))
    after, t1 = _metrics(port_a).get("ledger_events_applied_total", 0.0), time.perf_counter()
    window.events_per_s = (after - before) / (t1 - t0)
    return window


def one_run(csv: Path, workdir: Path, seconds: float, concurrency: int) -> list[Window]:
    with running_broker(log=workdir / "broker.log", engine="kafka") as broker:
        bootstrap = broker.bootstrap
        wait_for_broker(bootstrap)
        env = {**worker_env(bootstrap, "api"), **client_env("kafka")}
        ensure_topic(bootstrap, TOPIC, PARTITIONS)
        _produce(csv, env, plain_input=False)
        ends = end_offsets(bootstrap, TOPIC, PARTITIONS)
        procs, ports = _start_workers(env, 2, workdir)
        try:
            _wait_until_ready(ports, timeout=600)
            while not (_owned(ports[0]) and _owned(ports[1])):
                time.sleep(0.2)
            mine = set(_owned(ports[0]))
            clients = [
                c for c in range(1, CLIENTS + 1) if partition_for(client_key(c), PARTITIONS) in mine
            ]
            urls = {
                who: [f"http://127.0.0.1:{port}/accounts/{c}" for c in clients]
                for who, port in (("owner", ports[0]), ("forwarded", ports[1]))
            }
            windows = []
            turn = 0
            while not lag_zero(bootstrap, "api", ends):
                windows.append(_window(KINDS[turn % 3], True, ports[0], urls, seconds, concurrency))
                turn += 1
            for kind in ("owner", "forwarded"):
                windows.append(_window(kind, False, ports[0], urls, seconds, concurrency))
            return windows
        finally:
            _stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deposits", type=int, default=2_000_000)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    runs: list[list[Window]] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        csv = Path(tmp) / "deposits.csv"
        _deposits_csv(csv, args.deposits)
        for run in range(1, args.runs + 1):
            workdir = Path(tmp) / f"run-{run}"
            workdir.mkdir()
            windows = one_run(csv, workdir, args.window, args.concurrency)
            runs.append(windows)
            for w in windows:
                print(
                    f"run {run} {'busy' if w.busy else 'idle'} {w.kind:>9}: "
                    f"{w.events_per_s:,.0f} events/s, {w.requests_per_s:,.0f} requests/s "
                    f"(p50 {1000 * w.quantile(0.5):.1f} ms, p99 {1000 * w.quantile(0.99):.1f} ms, "
                    f"{w.errors} not 200)",
                    flush=True,
                )
    _report(runs)


def _report(runs: list[list[Window]]) -> None:
    med = statistics.median
    print("\n| load | input | requests/s | p50 ms | p99 ms | A's events/s vs no load |")
    print("|---|---|---:|---:|---:|---:|")
    for busy in (True, False):
        for kind in ("owner", "forwarded"):
            rates, p50, p99, ratios = [], [], [], []
            for windows in runs:
                loaded = [w for w in windows if w.kind == kind and w.busy == busy]
                quiet = [w.events_per_s for w in windows if w.kind == "none" and w.busy]
                if not loaded:
                    continue
                rates.append(med(w.requests_per_s for w in loaded))
                p50.append(med(w.quantile(0.5) for w in loaded))
                p99.append(med(w.quantile(0.99) for w in loaded))
                if busy and quiet:
                    ratios.append(med(w.events_per_s for w in loaded) / med(quiet))
            if not rates:
                continue
            ratio = f"{med(ratios):.2f}x" if ratios else "(idle)"
            print(
                f"| {kind} | {'flowing' if busy else 'idle'} | {med(rates):,.0f} | "
                f"{1000 * med(p50):.1f} | {1000 * med(p99):.1f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
