"""process-csv on one very long line (SPEC R23): time linear in the line, memory flat.

    python -m bench.bench_long_line [--sizes 0 10 50 200 1000 2000 --runs 3]
    python -m bench.bench_long_line --baseline /tmp/base   # also that checkout's code, to 200 MB

Each input is a header, a deposit, one line of N MB (10^6 bytes of `x`), and
a second deposit: the long line is malformed, the deposits are applied. Every
size is run `--runs` times, interleaved, as a subprocess with stdout to a file;
size 0 (no long line) is the start-up cost. Reported (medians): wall and CPU
seconds, CPU seconds per 100 MB above start-up (flat if linear), peak RSS.
The inputs stay in the page cache (bench/out/, removed at the end): this is
the reader's cost, not the disk's. A baseline (code before R23) is quadratic,
so it only runs sizes up to `--baseline-max` MB.

Peak RSS is measured by a small interpreter that spawns process-csv and reads
its RUSAGE_CHILDREN: a child's `ru_maxrss` also counts its spawner's memory
as of the spawn, and this bench process is bigger than what is measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_process_csv import OUT, ROOT, pin_code, process_csv_path

MB = 1_000_000
#: Runs argv[3:] with stdout to the file argv[2]; writes "seconds peak_kib cpu" to argv[1].
_MEASURE = """
import resource, subprocess, sys, time
with open(sys.argv[2], "wb") as out:
    start = time.perf_counter()
    code = subprocess.call(sys.argv[3:], stdout=out, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as report:
    report.write(f"{seconds} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(code)
"""


@dataclass
class Series:
    code: str  # "this" or "baseline"
    size_mb: int
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def write_input(path: Path, size_mb: int) -> None:
    piece = b"x" * MB
    with path.open("wb") as out:
        out.write(b"type,client,tx,amount\ndeposit,1,1,2\n")
        for _ in range(size_mb):
            out.write(piece)
        out.write(b"\ndeposit,1,2,3\n" if size_mb else b"deposit,1,2,3\n")


def run_once(data: Path, work: Path, env: dict[str, str]) -> tuple[float, int, float]:
    report, stdout = work / "report", work / "stdout"
    argv = [sys.executable, "-c", _MEASURE, str(report), str(stdout), process_csv_path(), str(data)]
    done = subprocess.run(argv, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit(f"process-csv exited with {done.returncode} on {data.name}")
    if not stdout.read_bytes().endswith(b"1,5.0000,0.0000,5.0000,false\n"):
        sys.exit(f"unexpected snapshot for {data.name}: {stdout.read_bytes()!r}")
    seconds, rss, cpu = report.read_text().split()
    return float(seconds), int(rss), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[0, 10, 50, 200, 1000, 2000], help="MB"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout whose code to run too")
    parser.add_argument("--baseline-max", type=int, default=200, help="MB (see above)")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT, prefix="long-") as tmp:
        work = Path(tmp)
        codes = {"this": pin_code(work)}
        if args.baseline is not None:
            codes["baseline"] = {**os.environ, "PYTHONPATH": str(args.baseline)}
        inputs = {}
        for size in args.sizes:
            inputs[size] = work / f"line-{size}mb.csv"
            write_input(inputs[size], size)
        sizes = {
            code: [s for s in args.sizes if code == "this" or s <= args.baseline_max]
            for code in codes
        }
        series = {(c, s): Series(c, s) for c in codes for s in sizes[c]}
        for run in range(args.runs):
            for size in args.sizes:
                for code, env in codes.items():
                    if size not in sizes[code]:
                        continue
                    seconds, rss, cpu = run_once(inputs[size], work, env)
                    series[code, size].seconds.append(seconds)
                    series[code, size].rss_kib.append(rss)
                    series[code, size].cpu.append(cpu)
                    print(
                        f"  run {run + 1}/{args.runs} {code:8} {size:4} MB  "
                        f"{seconds:7.2f} s  cpu {cpu:7.2f} s  {rss / 1024:7.1f} MiB",
                        file=sys.stderr,
                        flush=True,
                    )

    print(f"## process-csv on one long line: {args.runs} runs each, medians\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load: {os.getloadavg()[0]:.2f}\n")
    print("| code | line MB | wall s | CPU s | CPU s per 100 MB above start-up | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for code in codes:
        start_up = statistics.median(series[code, min(sizes[code])].cpu)
        for size in sizes[code]:
            one = series[code, size]
            wall, cpu = statistics.median(one.seconds), statistics.median(one.cpu)
            rate = f"{(cpu - start_up) / size * 100:.3f}" if size else "-"
            rss = statistics.median(one.rss_kib) / 1024
            print(f"| {code} | {size} | {wall:.2f} | {cpu:.2f} | {rate} | {rss:.1f} |")


if __name__ == "__main__":
    main()
