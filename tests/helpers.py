"""Small helpers shared by the end-to-end tests: find and run the real `process-csv`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO_ROOT / "tests" / "fixtures" / "golden"
#: The shared folder (SPEC, peer cases) sits next to the repository, not inside it.
SHARED_DIR = REPO_ROOT.parent / "shared"
SNAPSHOT_HEADER = b"client,available,held,total,locked\n"

_MALFORMED_DETAIL = re.compile(r"^(line \d+: malformed): .*$")


def cannot_run(what: str, why: str) -> NoReturn:
    """The one decision for a test whose tool or tier is missing here: skip, or fail under CI=true.

    CI installs everything it needs (.ci/run), so there a missing tool is a
    broken CI, never a reason to pass without testing.
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {what} cannot run: {why}", pytrace=False)
    pytest.skip(f"{what} skipped: {why}")


def process_csv_path() -> Path:
    """The installed console script of the interpreter running the tests."""
    return Path(sys.executable).parent / "process-csv"


def run(
    *args: str | Path, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `process-csv` with `args`; stdout and stderr are captured as bytes."""
    return subprocess.run(
        [process_csv_path(), *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


#: Runs argv[2:] and writes the child's peak RSS (KiB on Linux) to the file argv[1].
_MEASURE = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measuring_memory(
    *args: str | Path, stdin: int | IO[bytes] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run the real `process-csv` like `run`; also return its own peak RSS, in bytes.

    A child's peak RSS (`ru_maxrss`) also counts the memory of the process
    that spawned it, as it was when it did: spawned from this test process
    (often over 100 MiB), a child would seem at least that big. So a fresh,
    small interpreter spawns it and reports its RUSAGE_CHILDREN.
    """
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "peak"
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, report, process_csv_path(), *map(str, args)],
            stdin=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return done, int(report.read_text()) * 1024  # Linux: KiB


def stderr_lines_without_malformed_detail(stderr: bytes) -> list[str]:
    """stderr lines, with `line N: malformed: DETAIL` cut to `line N: malformed`.

    The detail wording is the engine's own (not part of SPEC), so goldens only pin
    the line number and the reason.
    """
    return [_MALFORMED_DETAIL.sub(r"\1", line) for line in stderr.decode().splitlines()]
