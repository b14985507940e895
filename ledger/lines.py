"""Lines of a CSV input, cut from its bytes in chunks of any size (R1, R22, R23).

Every reader of CSV input cuts its lines here (`read_rows`, hence produce-csv,
and process-csv's fused loop), so they agree on where a line ends, on the
byte-order mark and on over-long lines:

- R1: a line ends at `\\n`, or at `\\r\\n`; any other `\\r` is whitespace
  inside the line. Lines come out without their `\\n` (a `\\r` before it
  stays, the parser trims it), as when a binary file is iterated; an input
  ending in `\\n` has no empty line after it.
- R22: `EF BB BF` at the very start of the input is dropped; anywhere else
  it is bytes of a line.
- R23: a line longer than `MAX_LINE` bytes, its ending not counted, comes out
  as an `OverLong` (its length) in place of its bytes. Of an unfinished line
  at most `MAX_LINE + 1` bytes are kept (the 1: a last `\\r` that may turn out
  to be half of a `\\r\\n`); past that, the line is only counted while its
  `\\n` is looked for, so memory is bounded by the limit and time is linear in
  the line, however long (a 200 MB line, /dev/zero).

The common case pays one check per chunk, not per line: `_short_lines` hops
through the chunk ~4 KB at a time (0.15-0.4% of process-csv's instructions);
only a chunk with a line over the limit (or of exactly the limit before a
`\\r\\n`) is cut line by line, with every length checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

#: R23: the longest line allowed, in bytes, its line ending not counted.
MAX_LINE = 4096
#: R22: the UTF-8 byte-order mark.
BOM = b"\xef\xbb\xbf"

_CR = ord("\r")


class OverLong(NamedTuple):
    """An over-long line (R23), in place of its bytes, which are never held whole.

    A NamedTuple, not a dataclass: importing `dataclasses` and building one
    would add ~1 ms to every process-csv start.
    """

    #: Its bytes, line ending not counted.
    length: int

    @property
    def detail(self) -> str:
        # The length, never the content: it may be anything, and huge.
        return f"line is over {MAX_LINE} bytes ({self.length} bytes)"


#: One line as the readers see it: its bytes without `\n`, or an over-long line.
Line = bytes | OverLong
#: What `split_lines` yields: lines in input order, or one over-long line.
Block = list[bytes] | OverLong


def split_lines(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Cut a byte stream, in chunks of any size, into its lines, in order (R1, R22, R23).

    Yields lists of lines (without `\\n`, each at most MAX_LINE bytes after
    the `\\r` of a `\\r\\n`), and an `OverLong` for each line longer than that;
    together they are every physical line of the input, in order.
    """
    tail = b""  # the start of a line whose end has not come yet: at most MAX_LINE + 1 bytes
    skipped = -1  # inside an over-long line: its bytes so far (-1: not inside one)
    cr = False  # the last byte counted in `skipped` is a `\r`
    for chunk in _without_bom(chunks):
        if skipped >= 0:
            end = chunk.find(b"\n")
            if end < 0:
                skipped += len(chunk)
                cr = chunk[-1] == _CR
                continue
            ends_with_cr = chunk[end - 1] == _CR if end else cr
            yield OverLong(skipped + end - ends_with_cr)  # R1: a `\r\n` is the ending
            skipped = -1
            chunk = chunk[end + 1 :]
        buf = tail + chunk if tail else chunk
        if _short_lines(buf):
            lines = buf.split(b"\n")
            del buf  # a joined copy must not outlive the split: it is a chunk's size
            tail = lines.pop()
            if lines:
                yield lines
            continue
        # Some line here may be too long: cut line by line and measure each.
        lines = []
        start = 0
        find = buf.find
        while (end := find(b"\n", start)) >= 0:
            length = end - start
            if length > MAX_LINE and (length > MAX_LINE + 1 or buf[end - 1] != _CR):
                if lines:
                    yield lines
                    lines = []
                yield OverLong(length - (buf[end - 1] == _CR))
            else:
                lines.append(buf[start:end])
            start = end + 1
        rest = len(buf) - start
        if rest > MAX_LINE + 1 or (rest == MAX_LINE + 1 and buf[-1] != _CR):
            # Already too long whatever follows: count the rest of it, keep none.
            skipped, cr, tail = rest, buf[-1] == _CR, b""
        else:
            tail = buf[start:]
        if lines:
            yield lines
    if skipped >= 0:
        yield OverLong(skipped)  # no line ending: every byte counts, a last `\r` too
    elif len(tail) > MAX_LINE:
        yield OverLong(len(tail))
    elif tail:
        yield [tail]


class Lines:
    """An input's lines, one at a time (`bytes` or `OverLong`), counted as they are read.

    `count`: the lines handed out so far; once read to the end, every
    physical line of the input (produce-csv's journal counts lines, not rows).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.count = 0

    def __iter__(self) -> Iterator[Line]:
        for block in split_lines(self._chunks):
            if isinstance(block, OverLong):
                self.count += 1
                yield block
                continue
            for line in block:
                self.count += 1
                yield line


def content_length(line: bytes) -> int:
    """R23's length of one line: its bytes without its ending (`\\n` or `\\r\\n`, R1)."""
    if line.endswith(b"\r\n"):
        return len(line) - 2
    return len(line) - line.endswith(b"\n")


def _short_lines(buf: bytes) -> bool:
    """True if no line of `buf`, nor its unfinished end, is over MAX_LINE bytes, `\\r` and all.

    Hops from line start to line start by the last `\\n` within MAX_LINE
    bytes: one `rfind` per ~4 KB, and it finds a long line, it does not guess.
    """
    rfind = buf.rfind
    end = len(buf)
    start = 0
    while end - start > MAX_LINE:
        start = rfind(b"\n", start, start + MAX_LINE + 1) + 1
        if not start:  # no `\n` there: the line from the last `start` is too long
            return False
    return True


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, non-empty, without a BOM at the very start (R22), however they are cut."""
    rest = iter(chunks)
    start = b""
    for chunk in rest:
        start += chunk
        if len(start) >= len(BOM) or not BOM.startswith(start):
            break
    if start.startswith(BOM):
        start = start[len(BOM) :]
    if start:
        yield start
        start = b""  # not held while the rest is read
    for chunk in rest:
        if chunk:
            yield chunk
