"""Small helpers shared by the end-to-end tests: find and run the real `process-csv`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO_ROOT / "tests" / "fixtures" / "golden"
#: The shared folder (SPEC, peer cases) sits next to the repository, not inside it.
SHARED_DIR = REPO_ROOT.parent / "shared"
SNAPSHOT_HEADER = b"client,available,held,total,locked\n"

_MALFORMED_DETAIL = re.compile(r"^(line \d+: malformed): .*$")


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


def stderr_lines_without_malformed_detail(stderr: bytes) -> list[str]:
    """stderr lines, with `line N: malformed: DETAIL` cut to `line N: malformed`.

    The detail wording is the engine's own (not part of SPEC), so goldens only pin
    the line number and the reason.
    """
    return [_MALFORMED_DETAIL.sub(r"\1", line) for line in stderr.decode().splitlines()]
