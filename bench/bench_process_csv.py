"""End-to-end benchmark of `process-csv` against the plain reference loop.

    python -m bench.bench_process_csv [--rows 1000000 --clients 5000 --runs 5 --seed 1]
    python -m bench.bench_process_csv --baseline /tmp/base   # also that checkout's code, same runs

Generates the seeded workload (and its dirty variant) once under bench/out/,
then runs every command as a subprocess, interleaved run by run, with stdout
to a file. Wall time includes interpreter start-up (it is the end-to-end
figure); peak RSS is the child's own `ru_maxrss` from `os.wait4`. All outputs
of one workload must be byte-identical, or the benchmark fails.

The working tree may be edited while this runs, so by default ledger/ and
runner/ are copied once at the start and `process-csv` imports that copy
(PYTHONPATH comes before the editable install); `--live` measures the tree as it is.
`--baseline DIR` adds process-csv running DIR's code (a `git worktree` of the
commit to compare with), interleaved with the rest, and prints this code's
rows/s over the baseline's, run by run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.workload import generate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
REFERENCE = "reference loop"
TARGET_ROWS_PER_S = 800_000


@dataclass
class Variant:
    name: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    #: The child's user + system CPU seconds: less shaken than wall time by other load.
    cpu: list[float] = field(default_factory=list)
    #: The children's environment when not the run's (the baseline's code).
    env: dict[str, str] | None = None


@dataclass
class Result:
    workload: str
    rows: int
    variants: list[Variant]
    identical: bool
    mismatch: str = ""


def process_csv_path() -> str:
    beside = Path(sys.executable).parent / "process-csv"
    found = str(beside) if beside.exists() else shutil.which("process-csv")
    if found is None:
        sys.exit("process-csv not found: install the project (pip install -e .) first")
    return found


SILENT, SKIP = "process-csv --on-error silent", "process-csv (default: skip)"
BASELINE = " [baseline]"


def variants(data: Path, baseline: Path | None) -> list[Variant]:
    tool = process_csv_path()
    ours = [
        Variant(SILENT, [tool, "--on-error", "silent", str(data)]),
        Variant(SKIP, [tool, str(data)]),
        Variant(REFERENCE, [sys.executable, "-m", "bench.reference_loop", str(data)]),
    ]
    if baseline is None:
        return ours
    env = {**os.environ, "PYTHONPATH": str(baseline)}
    return ours + [Variant(v.name + BASELINE, v.argv, env=env) for v in ours if v.name != REFERENCE]


def pin_code(work: Path) -> dict[str, str]:
    """Copy ledger/ and runner/ now; return the environment that makes children import the copy."""
    pinned = work / "code"
    skip = shutil.ignore_patterns("__pycache__")
    for package in ("ledger", "runner"):
        shutil.copytree(ROOT / package, pinned / package, ignore=skip)
    return {**os.environ, "PYTHONPATH": str(pinned)}


def run_once(argv: list[str], stdout: Path, env: dict[str, str] | None) -> tuple[float, int, float]:
    """Run argv to completion; return (wall seconds, peak RSS in KiB, CPU seconds) of that child.

    stderr goes to /dev/null: the default policy still formats and writes every report.
    """
    with open(stdout, "wb") as out:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        # Run it again with stderr kept, to say why (the timed run sends it to /dev/null).
        again = subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, check=False)
        tail = "\n".join(again.stderr.decode(errors="replace").splitlines()[-5:])
        sys.exit(f"{' '.join(argv)} exited with {code}; stderr of a re-run:\n{tail}")
    return seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime  # Linux: kilobytes


def measure(
    workload: str,
    data: Path,
    rows: int,
    runs: int,
    work: Path,
    env: dict[str, str] | None,
    baseline: Path | None,
) -> Result:
    todo = variants(data, baseline)
    reference_output: bytes | None = None
    result = Result(workload, rows, todo, identical=True)
    for run in range(runs):
        # Rotate the order each run so no command always goes first (cold caches, turbo).
        for index in range(len(todo)):
            variant = todo[(index + run) % len(todo)]
            stdout = work / f"{workload}-{todo.index(variant)}-{run}.csv"
            seconds, rss, cpu = run_once(variant.argv, stdout, variant.env or env)
            variant.cpu.append(cpu)
            variant.seconds.append(seconds)
            variant.rss_kib.append(rss)
            output = stdout.read_bytes()
            stdout.unlink()
            if reference_output is None:
                reference_output = output
            elif output != reference_output and result.identical:
                result.identical = False
                result.mismatch = f"{variant.name} (run {run + 1}) differs from the first output"
            print(
                f"  {workload:5} run {run + 1}/{runs}  {variant.name:30} "
                f"{seconds:6.2f} s  {rss / 1024:7.1f} MiB",
                file=sys.stderr,
                flush=True,
            )
    return result


def machine_facts() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- nproc: {usable} (os.cpu_count: {os.cpu_count()}), CPU: {cpu}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}",
    ]


def code_under_test() -> str:
    """The commit, and whether the engine code differs from it (the tree may be shared)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, cwd=ROOT, check=False)
        return done.stdout.decode()

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "ledger", "runner")
    state = (
        "clean"
        if not dirty
        else "uncommitted changes: " + ", ".join(line[3:] for line in dirty.splitlines())
    )
    return f"- code: commit {head}; ledger/ and runner/ {state}"


def baseline_commit(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, cwd=checkout, check=False
    )
    return f"commit {done.stdout.decode().strip() or 'unknown'}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def table(results: list[Result]) -> list[str]:
    lines = [
        "| workload | command | median rows/s (min-max) | median wall s "
        "| median peak RSS MiB | rows/s vs reference | RSS vs reference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        reference = next(v for v in result.variants if v.name == REFERENCE)
        ref_rate = result.rows / statistics.median(reference.seconds)
        ref_rss = statistics.median(reference.rss_kib)
        for variant in result.variants:
            wall = statistics.median(variant.seconds)
            rate = result.rows / wall
            fast, slow = result.rows / min(variant.seconds), result.rows / max(variant.seconds)
            rss = statistics.median(variant.rss_kib)
            lines.append(
                f"| {result.workload} | {variant.name} | {rate:,.0f} ({slow:,.0f}-{fast:,.0f}) "
                f"| {wall:.2f} | {rss / 1024:.1f} | {rate / ref_rate:.2f}x | {rss / ref_rss:.2f}x |"
            )
    return lines


def versus_baseline(results: list[Result]) -> list[str]:
    """This code's rows/s over the baseline's: the median of the ratios of the same run."""
    lines = [
        "| workload | command | rows/s this / baseline: by wall time | by CPU time |",
        "|---|---|---:|---:|",
    ]

    def ratio(this: list[float], base: list[float]) -> str:
        ratios = [b / t for t, b in zip(this, base, strict=True)]
        return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"

    for result in results:
        by_name = {v.name: v for v in result.variants}
        for name in (SILENT, SKIP):
            this, base = by_name[name], by_name[name + BASELINE]
            lines.append(
                f"| {result.workload} | {name} | {ratio(this.seconds, base.seconds)} "
                f"| {ratio(this.cpu, base.cpu)} |"
            )
    lines.append("\n(medians of the same-run ratios, min-max in brackets)")
    return lines


def verdicts(clean: Result) -> list[str]:
    reference = next(v for v in clean.variants if v.name == REFERENCE)
    ref_rss = statistics.median(reference.rss_kib)
    lines = []
    for variant in clean.variants:
        if variant.name == REFERENCE:
            continue
        rate = clean.rows / statistics.median(variant.seconds)
        rss = statistics.median(variant.rss_kib)
        speed = "meets" if rate >= TARGET_ROWS_PER_S else "MISSES"
        memory = "meets" if rss <= ref_rss else "MISSES"
        lines.append(
            f"- {variant.name}: {rate:,.0f} rows/s {speed} the >= {TARGET_ROWS_PER_S:,} rows/s "
            f"target; peak RSS {rss / 1024:.1f} MiB vs reference {ref_rss / 1024:.1f} MiB "
            f"{memory} the 'no higher than the reference loop' target"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-dirty", action="store_true", help="skip the dirty workload")
    parser.add_argument(
        "--live", action="store_true", help="import ledger/ and runner/ from the tree, not a copy"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout (git worktree) whose code to run too, interleaved, for a same-run ratio",
    )
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    load_before = load()
    code_before = code_under_test()
    with tempfile.TemporaryDirectory(dir=OUT, prefix="bench-") as tmp:
        work = Path(tmp)
        env = None if args.live else pin_code(work)
        workloads = [("clean", False)] + ([] if args.no_dirty else [("dirty", True)])
        results = []
        for name, dirty in workloads:
            data = work / f"{name}.csv"
            with open(data, "w", newline="") as handle:
                handle.writelines(generate(args.rows, args.clients, args.seed, dirty=dirty))
            print(f"{name} workload: {data.stat().st_size / 2**20:.1f} MiB", file=sys.stderr)
            results.append(measure(name, data, args.rows, args.runs, work, env, args.baseline))
    load_after = load()
    if args.live and code_under_test() != code_before:
        print("warning: ledger/ or runner/ changed while the benchmark ran", file=sys.stderr)

    print(
        f"## process-csv benchmark: {args.rows:,} rows, {args.clients:,} clients, "
        f"seed {args.seed}, {args.runs} runs each, interleaved\n"
    )
    print("\n".join(machine_facts()))
    print(code_before + ("" if args.live else " (copied at start; children import the copy)"))
    print(f"- load average (1/5/15 min): {load_before} before, {load_after} after")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    print("\n".join(table(results)) + "\n")
    if args.baseline is not None:
        print(f"Against the baseline ({args.baseline}, {baseline_commit(args.baseline)}):\n")
        print("\n".join(versus_baseline(results)) + "\n")
    for result in results:
        same = "byte-identical" if result.identical else f"DIFFERENT: {result.mismatch}"
        print(f"- {result.workload} outputs: {same}")
    print("\nTargets (clean workload):")
    print("\n".join(verdicts(results[0])))
    if not all(result.identical for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
