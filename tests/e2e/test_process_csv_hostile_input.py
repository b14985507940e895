"""process-csv on hostile input, through the real console script: a byte-order mark
(R22), lines far over 4096 bytes and input without a single newline (R23).

An over-long line ends like any malformed line (exit 0 with the snapshot; exit 1
under --on-error abort), and is read in memory bounded by the limit, not by the
line: each run's own peak RSS is measured. No time is asserted here;
`python -m bench.bench_long_line` shows the time growing linearly with the line.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import SNAPSHOT_HEADER, process_csv_path, run, run_measuring_memory

MiB = 1 << 20
#: The interpreter with its imports takes ~15 MiB, a read chunk 1 MiB, and of a
#: line at most 4 KiB is kept: ~18 MiB measured. The code before R23 held the
#: line, twice over at times (a 200 MB line: 616 MiB; 100 MB of zeros on
#: stdin: 206 MiB; /dev/zero: 583 MiB by 300 MB read, then MemoryError).
MEMORY_BOUND = 64 * MiB
BOM = b"\xef\xbb\xbf"
ZEROS = 100_000_000
NO_REJECTIONS = (
    b"account_locked=0 duplicate=0 insufficient_funds=0 unknown_tx=0 "
    b"already_disputed=0 not_disputed=0 overflow=0"
)


def _write_with_long_line(path: Path, before: bytes, piece: bytes, count: int, after: bytes) -> int:
    """Write `before`, then one line of `piece` repeated `count` times, then `after`."""
    with path.open("wb") as out:
        out.write(before)
        for _ in range(count):
            out.write(piece)
        out.write(after)
    return len(piece) * count


def test_a_200_mb_line_is_one_malformed_line_read_in_bounded_memory(tmp_path: Path) -> None:
    # R23: malformed whatever it holds; the rows around it are applied as usual.
    path = tmp_path / "long.csv"
    length = _write_with_long_line(
        path, b"type,client,tx,amount\ndeposit,1,1,2\n", b"x" * MiB, 200, b"\ndeposit,1,2,3\n"
    )

    result, peak = run_measuring_memory(path)

    assert result.returncode == 0
    assert peak < MEMORY_BOUND, f"peak RSS {peak / MiB:.0f} MiB for a {length} byte line"
    assert result.stdout == SNAPSHOT_HEADER + b"1,5.0000,0.0000,5.0000,false\n"
    assert result.stderr.splitlines() == [
        # The length, never the content.
        f"line 3: malformed: line is over 4096 bytes ({length} bytes)".encode(),
        b"summary: rows=3 applied=2 malformed=1 " + NO_REJECTIONS,
    ]


def test_a_30_mb_row_of_ten_million_fields_is_never_split_into_them(tmp_path: Path) -> None:
    # R23: a row is over-long before it has fields (the code before split it: 1.2 GB).
    path = tmp_path / "wide.csv"
    length = _write_with_long_line(path, b"", b"12," * 1_000_000, 10, b"\r\n")

    result, peak = run_measuring_memory(path)

    assert result.returncode == 0
    assert peak < MEMORY_BOUND, f"peak RSS {peak / MiB:.0f} MiB"
    assert result.stdout == SNAPSHOT_HEADER
    assert result.stderr.splitlines()[0] == (
        f"line 1: malformed: line is over 4096 bytes ({length} bytes)".encode()
    )


def test_100_mb_of_zeros_on_stdin_without_a_newline_is_one_malformed_line(
    tmp_path: Path,
) -> None:  # R23: what `process-csv - < /dev/zero` meets, cut short
    head = shutil.which("head")
    if head is None:
        pytest.skip("no `head` to cut /dev/zero short")
    zeros = subprocess.Popen([head, "-c", str(ZEROS), "/dev/zero"], stdout=subprocess.PIPE)
    assert zeros.stdout is not None
    try:
        result, peak = run_measuring_memory("-", stdin=zeros.stdout)
    finally:
        zeros.stdout.close()
        zeros.wait()

    assert result.returncode == 0
    assert peak < MEMORY_BOUND, f"peak RSS {peak / MiB:.0f} MiB"
    assert result.stdout == SNAPSHOT_HEADER
    assert result.stderr.splitlines() == [
        f"line 1: malformed: line is over 4096 bytes ({ZEROS} bytes)".encode(),
        b"summary: rows=1 applied=0 malformed=1 " + NO_REJECTIONS,
    ]
    assert b"Traceback" not in result.stderr


def test_dev_zero_itself_is_read_in_bounded_memory_until_interrupted() -> None:
    # R23: an endless line. It never ends, so it is stopped, once 300 MB have been
    # read, by SIGTERM: exit 143 and one line, no snapshot, no MemoryError traceback.
    proc = subprocess.Popen(
        [process_csv_path(), "/dev/zero"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while _bytes_read(proc.pid) < 300_000_000:
            assert proc.poll() is None, proc.communicate()[1][-500:]
            assert time.monotonic() < deadline, "process-csv did not read /dev/zero"
            time.sleep(0.05)
        peak = _peak_rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)

    assert peak < MEMORY_BOUND, f"peak RSS {peak / MiB:.0f} MiB after 300 MB"
    assert proc.returncode == 128 + signal.SIGTERM
    assert stdout == b""
    assert (
        stderr.decode().splitlines()[0]
        == "process-csv: interrupted by SIGTERM; no snapshot written"
    )
    assert b"Traceback" not in stderr


def _bytes_read(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_abort_stops_at_an_over_long_line_as_at_any_malformed_line(tmp_path: Path) -> None:
    # R23, R7: --on-error abort: exit 1, no snapshot, nothing after it is read.
    path = tmp_path / "long.csv"
    path.write_bytes(b"deposit,1,1,1\n" + b"deposit,1,2,1" * 400 + b"\ndeposit,1,3,1\n")

    result = run("--on-error", "abort", path)

    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert lines[0] == "line 2: malformed: line is over 4096 bytes (5200 bytes)"
    assert "stopped at line 2" in lines[1]
    assert lines[2].startswith("summary: rows=2 applied=1 malformed=1 ")


def test_a_bom_before_the_header_of_a_spreadsheet_export_is_ignored(tmp_path: Path) -> None:
    # R22: the header is recognised (R2), so no line is malformed.
    path = tmp_path / "export.csv"
    path.write_bytes(BOM + b"type,client,tx,amount\r\ndeposit,1,1,2.5\r\nwithdrawal,1,2,1\r\n")

    result = run(path)

    assert result.returncode == 0
    assert result.stdout == SNAPSHOT_HEADER + b"1,1.5000,0.0000,1.5000,false\n"
    assert result.stderr.splitlines() == [b"summary: rows=2 applied=2 malformed=0 " + NO_REJECTIONS]


def test_a_bom_on_stdin_is_ignored_too() -> None:  # R22
    result = run("-", stdin=BOM + b"type,client,tx,amount\ndeposit,7,1,1\n")

    assert result.returncode == 0
    assert result.stdout == SNAPSHOT_HEADER + b"7,1.0000,0.0000,1.0000,false\n"
    assert result.stderr.splitlines() == [b"summary: rows=1 applied=1 malformed=0 " + NO_REJECTIONS]


def test_an_over_long_first_line_makes_the_header_after_it_a_malformed_row(
    tmp_path: Path,
) -> None:
    # R23: the over-long line is not blank, so it is R2's first non-empty line; it
    # is not the header, and the header on line 2 is data, hence malformed.
    path = tmp_path / "in.csv"
    path.write_bytes(b" " * 4097 + b"\ntype,client,tx,amount\ndeposit,1,1,1\n")

    result = run(path)

    assert result.returncode == 0
    assert result.stdout == SNAPSHOT_HEADER + b"1,1.0000,0.0000,1.0000,false\n"
    lines = result.stderr.decode().splitlines()
    assert lines[0] == "line 1: malformed: line is over 4096 bytes (4097 bytes)"
    assert lines[1].startswith("line 2: malformed: unknown type")
    assert lines[2].startswith("summary: rows=3 applied=1 malformed=2 ")
