"""`process-csv` as a user meets it: arguments, stdin, exit codes, stderr, signals.

Most tests run the real console script in a subprocess; the ones named
`test_in_process_...` go through click's CliRunner on `runner.process_csv:cli`.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.workload import generate
from runner.process_csv import cli
from tests.helpers import SNAPSHOT_HEADER, process_csv_path, run

SUMMARY_PREFIX = b"summary: rows="
CLEAN = b"type,client,tx,amount\ndeposit,1,1,2.5\nwithdrawal,1,2,1\ndeposit,2,3,4\n"
CLEAN_SNAPSHOT = SNAPSHOT_HEADER + b"1,1.5000,0.0000,1.5000,false\n2,4.0000,0.0000,4.0000,false\n"
#: Malformed rows on lines 3 and 5; a rejected (insufficient_funds) row on line 4.
TWO_MALFORMED = (
    b"type,client,tx,amount\n"
    b"deposit,1,1,2\n"
    b"deposit,1,2,abc\n"
    b"withdrawal,1,3,99\n"
    b"bogus\n"
    b"deposit,2,4,1\n"
)


def _write(tmp_path: Path, data: bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the real console script ------------------------------------------------------------


def test_a_clean_run_exits_zero_prints_the_snapshot_and_ends_stderr_with_the_summary(
    tmp_path: Path,
) -> None:
    result = run(_write(tmp_path, CLEAN))

    assert result.returncode == 0
    assert result.stdout == CLEAN_SNAPSHOT
    assert result.stderr.splitlines() == [
        b"summary: rows=3 applied=3 malformed=0 account_locked=0 duplicate=0 "
        b"insufficient_funds=0 unknown_tx=0 already_disputed=0 not_disputed=0 overflow=0"
    ]


def test_a_dash_reads_the_transactions_from_stdin() -> None:
    result = run("-", stdin=CLEAN)

    assert result.returncode == 0
    assert result.stdout == CLEAN_SNAPSHOT


def test_skipped_bad_rows_still_exit_zero_with_the_full_snapshot(tmp_path: Path) -> None:
    """R7, R19: the default policy reports bad rows, skips them and finishes normally."""
    result = run(_write(tmp_path, TWO_MALFORMED))

    assert result.returncode == 0
    assert result.stdout == (
        SNAPSHOT_HEADER + b"1,2.0000,0.0000,2.0000,false\n2,1.0000,0.0000,1.0000,false\n"
    )
    lines = result.stderr.splitlines()
    assert [line.split(b":")[:2] for line in lines[:3]] == [
        [b"line 3", b" malformed"],
        [b"line 4", b" insufficient_funds"],
        [b"line 5", b" malformed"],
    ]
    assert lines[3].startswith(SUMMARY_PREFIX)


def test_abort_stops_at_the_first_malformed_row_and_prints_no_snapshot(tmp_path: Path) -> None:
    result = run("--on-error", "abort", _write(tmp_path, TWO_MALFORMED))

    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.startswith("line 3: malformed: ")
    assert "stopped at line 3" in stderr
    assert "line 4" not in stderr, "rows after the first malformed one must not be read"
    assert "line 5" not in stderr
    assert "Traceback" not in stderr


def test_abort_does_not_stop_on_rule_rejections_of_well_formed_rows(tmp_path: Path) -> None:
    data = b"deposit,1,1,1\nwithdrawal,1,2,5\ndispute,1,9\n"
    result = run("--on-error", "abort", _write(tmp_path, data))

    assert result.returncode == 0
    assert result.stdout == SNAPSHOT_HEADER + b"1,1.0000,0.0000,1.0000,false\n"


def test_abort_summary_counts_the_rows_read_before_stopping(tmp_path: Path) -> None:
    result = run("--on-error", "abort", _write(tmp_path, b"deposit,1,1,1\nbogus\n"))

    assert result.returncode == 1
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith(b"summary: rows=2 applied=1 malformed=1 "), summary


def test_silent_prints_no_per_row_lines_but_still_the_summary(tmp_path: Path) -> None:
    result = run("--on-error", "silent", _write(tmp_path, TWO_MALFORMED))

    assert result.returncode == 0
    assert result.stdout.startswith(SNAPSHOT_HEADER)
    assert result.stderr.splitlines() == [
        b"summary: rows=5 applied=2 malformed=2 account_locked=0 duplicate=0 "
        b"insufficient_funds=1 unknown_tx=0 already_disputed=0 not_disputed=0 overflow=0"
    ]


def test_stderr_line_numbers_count_physical_lines_including_header_and_blank_ones(
    tmp_path: Path,
) -> None:
    data = (
        b"\n"  # 1
        b"type,client,tx,amount\r\n"  # 2 the header (first non-empty line)
        b"   \n"  # 3
        b"deposit,1,1,x\r\n"  # 4 malformed
        b"\r\n"  # 5
        b"deposit,1,2,1\n"  # 6
        b"\n"  # 7
        b"withdrawal,1,3,5\n"  # 8 insufficient_funds
    )
    result = run(_write(tmp_path, data))

    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("line 4: malformed: ")
    assert lines[1] == "line 8: insufficient_funds: client 1, tx 3"
    assert lines[2].startswith("summary: rows=3 applied=1 malformed=1 ")


@pytest.mark.parametrize("kind", ["missing file", "directory"])
def test_an_unreadable_path_exits_2_with_exactly_one_stderr_line_and_no_traceback(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "nope.csv" if kind == "missing file" else tmp_path

    result = run(path)

    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0]
    assert "Traceback" not in lines[0]


@pytest.mark.parametrize(
    "args",
    [["--bogus", "x.csv"], ["--on-error", "sometimes", "x.csv"], [], ["a.csv", "b.csv"]],
    ids=["unknown option", "unknown policy", "no path", "two paths"],
)
def test_a_bad_command_line_exits_2_without_a_traceback(args: list[str]) -> None:
    result = run(*args)

    assert result.returncode == 2
    assert result.stdout == b""
    assert b"Usage:" in result.stderr
    assert b"Traceback" not in result.stderr


# --- a hostile environment: full disk, a locale without UTF-8, memory running out ---------


def test_a_full_disk_on_stdout_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [process_csv_path(), str(_write(tmp_path, CLEAN))],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )

    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == ["process-csv: I/O error: No space left on device"]


def _ascii_locale() -> dict[str, str]:
    """A C locale that Python does not coerce to UTF-8 (PYTHONUTF8=0): stdio is ASCII."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    return {**env, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def test_under_an_ascii_locale_a_non_ascii_row_is_reported_escaped_and_the_run_completes(
    tmp_path: Path,
) -> None:
    data = "type,client,tx,amount\ndeposit,1,1,2.5\ndeposit,1,2,\u20ac3\n".encode()
    done = subprocess.run(
        [process_csv_path(), str(_write(tmp_path, data))],
        env=_ascii_locale(),
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == SNAPSHOT_HEADER + b"1,2.5000,0.0000,2.5000,false\n"
    lines = done.stderr.splitlines()
    assert lines[0] == b"line 3: malformed: bad amount '\\u20ac3'"
    assert lines[1].startswith(SUMMARY_PREFIX)


def _address_space_limit(megabytes: int) -> Callable[[], None]:
    def limit() -> None:  # runs in the child, before it executes process-csv
        size = megabytes << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return limit


def test_running_out_of_memory_exits_2_with_one_line_and_no_snapshot(tmp_path: Path) -> None:
    # Deposits stay in memory (a dispute may name any of them): 600k distinct
    # ones need well over 100 MiB, where starting takes about 20.
    deposits = "".join(f"deposit,{n % 65_536},{n},1.5\n" for n in range(600_000))
    big = _write(tmp_path, ("type,client,tx,amount\n" + deposits).encode(), "big.csv")
    limited = _address_space_limit(96)
    small = subprocess.run(
        [process_csv_path(), str(_write(tmp_path, CLEAN))],
        preexec_fn=limited,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert small.returncode == 0, "the limit must leave room to start and run a small input"

    done = subprocess.run(
        [process_csv_path(), str(big)],
        preexec_fn=limited,
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == ["process-csv: out of memory"]


# --- signals ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2M rows: seconds of work, so a signal surely lands while rows are being applied."""
    path = tmp_path_factory.mktemp("workload") / "big.csv"
    with path.open("w") as out:
        out.writelines(generate(rows=2_000_000, clients=5000, seed=1))
    return path


def _interrupt_while_processing(
    path: Path, tmp_path: Path, signum: signal.Signals
) -> tuple[int, bytes, bytes]:
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen([process_csv_path(), str(path)], stdout=out, stderr=err)
        try:
            # Processing has started once the first per-row reports reach stderr (they
            # come out in 64 KiB chunks); the signal handlers are installed by then.
            time.sleep(0.3)
            deadline = time.monotonic() + 30
            while stderr.stat().st_size == 0 and proc.poll() is None:
                assert time.monotonic() < deadline, "process-csv never started reporting"
                time.sleep(0.05)
            assert proc.poll() is None, "process-csv finished before it could be interrupted"
            proc.send_signal(signum)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, stdout.read_bytes(), stderr.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_while_processing_exits_128_plus_signal_with_no_partial_snapshot(
    big_csv: Path, tmp_path: Path, signum: signal.Signals, exit_code: int
) -> None:
    returncode, stdout, stderr = _interrupt_while_processing(big_csv, tmp_path, signum)

    assert returncode == exit_code
    assert stdout == b"", "an interrupted run must not print a (partial) snapshot"
    tail = stderr.decode().splitlines()[-2:]
    assert tail[0] == f"process-csv: interrupted by {signum.name}; no snapshot written"
    assert tail[1].startswith("summary: rows=")
    assert "Traceback" not in stderr.decode()


# --- in process, through click's CliRunner ----------------------------------------------


def test_in_process_a_dash_reads_stdin_and_prints_the_snapshot() -> None:
    result = CliRunner().invoke(cli, ["-"], input=CLEAN)

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == CLEAN_SNAPSHOT


def test_in_process_abort_exits_1_names_the_line_and_prints_no_snapshot(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(cli, ["--on-error", "abort", str(_write(tmp_path, TWO_MALFORMED))])

    assert result.exit_code == 1
    assert result.stdout_bytes == b""
    assert "stopped at line 3" in result.stderr


def test_in_process_silent_exits_0_with_the_snapshot(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--on-error", "silent", str(_write(tmp_path, TWO_MALFORMED))])

    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(SNAPSHOT_HEADER)


def test_in_process_a_missing_file_exits_2_without_an_exception(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [str(tmp_path / "nope.csv")])

    assert result.exit_code == 2
    assert result.stdout_bytes == b""
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.count("\n") == 1


def test_in_process_an_unknown_option_exits_2() -> None:
    result = CliRunner().invoke(cli, ["--bogus", "x.csv"])

    assert result.exit_code == 2
    assert "No such option" in result.output


def test_in_process_the_reports_go_to_the_stderr_clirunner_captures() -> None:
    result = CliRunner().invoke(cli, ["-"], input=b"bogus\n")

    assert result.exit_code == 0
    assert result.stderr.startswith("line 1: malformed: ")
    assert result.stderr.splitlines()[-1].startswith("summary: rows=1 applied=0 malformed=1 ")


def test_in_process_a_run_leaves_garbage_collection_enabled() -> None:
    assert gc.isenabled()

    result = CliRunner().invoke(cli, ["-"], input=CLEAN)

    assert result.exit_code == 0
    assert gc.isenabled(), "process-csv left the cyclic garbage collector disabled"
