"""Opening the input named on the command line: a path, or `-` for stdin."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import BinaryIO

from runner.console import CommandError

_BUFFER = 1 << 20
#: Bytes asked for at a time; `ledger.lines` cuts the lines.
CHUNK = 1 << 20


class InputError(CommandError):
    """The input cannot be read: one clear line, exit 2, never a traceback."""


@contextlib.contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def read_chunks(stream: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The stream's bytes, at most `size` at a time, to be cut into lines by `ledger.lines`.

    Never a line at a time: iterating a binary file by lines holds a whole
    line, however long (SPEC R23). `read1` hands over what a pipe holds now,
    so rows from a slow writer are not kept waiting for a chunk to fill.
    """
    read = getattr(stream, "read1", stream.read)
    while chunk := read(size):
        yield chunk
