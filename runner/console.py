"""What every one-shot command does the same way: error policy, per-row reports,
the closing summary, exit codes and signals.

Decide-skip-or-stop lives here, once: `RowReporter.malformed` either reports
and lets the caller skip the row, or raises `Aborted`. How a command ends
when its surroundings fail it (a full disk, an encoding the output cannot
take, memory running out) is decided here too, once: `run_console_script`,
which every console script's `main()` calls.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum
from types import FrameType
from typing import IO, NoReturn

import click

from ledger import Reason

EXIT_OK = 0
EXIT_ABORTED = 1
EXIT_USAGE = 2
#: 128 + signal number, the shell's convention for "killed by".
EXIT_SIGNAL_BASE = 128


_MALFORMED = Reason.MALFORMED
_NAMES = {reason: reason.value for reason in Reason}  # as str: formats faster than the enum


class ErrorPolicy(StrEnum):
    SKIP = "skip"  # report each bad row on stderr, go on
    ABORT = "abort"  # stop at the first malformed row, exit 1
    SILENT = "silent"  # go on, report nothing per row (the summary still counts)


class CommandError(Exception):
    """Base of the runner's errors: each carries the exit code the command ends with."""

    exit_code = EXIT_USAGE


class Aborted(CommandError):
    exit_code = EXIT_ABORTED


class Interrupted(CommandError):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = EXIT_SIGNAL_BASE + signum


class RowReporter:
    """Counts outcomes per reason and writes one stderr line per bad row (R7, R19)."""

    def __init__(self, policy: ErrorPolicy, stream: IO[str]) -> None:
        self.policy = policy
        self.stream = stream
        self.counts: Counter[Reason] = Counter()
        self.applied = 0
        # Looked up once: an enum member costs ~90 ns to reach on CPython 3.11,
        # and a run with many rejected rows calls `rejected` for each of them.
        self._report = policy is not ErrorPolicy.SILENT
        self._abort = policy is ErrorPolicy.ABORT

    def malformed(self, line: int, detail: str) -> None:
        self.counts[_MALFORMED] += 1
        if self._report:
            self.stream.write(f"line {line}: malformed: {detail}\n")
        if self._abort:
            raise Aborted(f"stopped at line {line} (--on-error abort)")

    def rejected(self, line: int, reason: Reason, client: int, tx: int) -> None:
        self.counts[reason] += 1
        if self._report:
            self.stream.write(f"line {line}: {_NAMES[reason]}: client {client}, tx {tx}\n")

    def summary(self) -> str:
        """One line, every reason in SPEC order, so scripts can parse it."""
        rejected = sum(self.counts.values())
        parts = [f"rows={self.applied + rejected}", f"applied={self.applied}"]
        parts += [f"{reason}={self.counts[reason]}" for reason in Reason]
        return "summary: " + " ".join(parts)


def buffered_stderr() -> IO[str]:
    """stderr with a large buffer: per-row reports would otherwise cost a syscall each.

    Where something replaced sys.stderr (a test runner, an embedding program),
    write to what it put there instead.
    """
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return sys.stderr
    # backslashreplace, as Python's own stderr: a report quoting a character
    # the locale cannot encode (a non-ASCII row under LC_ALL=C with
    # PYTHONUTF8=0) is written escaped instead of stopping the run.
    return open(
        sys.stderr.fileno(), "w", buffering=1 << 16, errors="backslashreplace", closefd=False
    )


def run_console_script(command: click.Command, prog_name: str) -> NoReturn:
    """Run a console script's command; failures of its surroundings end in exit 2.

    Each command maps its own errors to its exit codes (1 aborted, 2 usage
    or I/O error, 3 refused, ...). What can stop any of them at any line is
    decided here instead: output that cannot be written (a full disk, an
    encoding the output's locale lacks) and memory running out. Uncaught,
    each ended in a traceback and exit 1, which reads as "aborted"; a write
    failing only in the flush at interpreter exit even ended in exit 120.
    """
    code: int | str | None = EXIT_OK
    failure: str | None = None
    try:
        try:
            command.main(prog_name=prog_name)  # standalone mode: ends in SystemExit
        except SystemExit as exc:
            code = exc.code
        # Here rather than at interpreter exit, where a failure is only
        # "Exception ignored" and exit 120.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except MemoryError:
        failure = "out of memory"
    except OSError as exc:
        failure = f"I/O error: {exc.strerror or exc}"
        if exc.filename is not None:
            failure += f": {os.fsdecode(exc.filename)!r}"
    except UnicodeEncodeError as exc:
        failure = (
            f"cannot encode {exc.object[exc.start : exc.end]!a} as {exc.encoding}: "
            "use a UTF-8 locale (LC_ALL=C.UTF-8) or PYTHONIOENCODING=utf-8"
        )
    if failure is None:
        sys.exit(code)
    # Out of the except clauses: the traceback is gone, and with it the
    # frames it held, for MemoryError the tables that filled memory.
    _unblock(sys.stdout)
    with contextlib.suppress(OSError, ValueError, MemoryError):
        sys.stderr.write(f"{prog_name}: {failure}\n")
    _unblock(sys.stderr)
    sys.exit(EXIT_USAGE)


def _unblock(stream: IO[str] | None) -> None:
    """A stream whose pending output cannot be written is pointed at /dev/null.

    Python flushes it again at exit; failing there, it would print
    "Exception ignored ..." after our one line and exit 120 instead of 2.
    """
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off inside the block.

    Ledger state holds only ints and bools, so it can never form a reference
    cycle; with the collector on, every collection re-walks the whole growing
    deposit table (measured: half of apply time on 1M rows).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `Interrupted` inside the block."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Inside the block SIGINT/SIGTERM are ignored: used while the final output is
    written, so a result is either not started or written whole, never cut short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
