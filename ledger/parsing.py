"""CSV input rules R1-R7, R22, R23: bytes in, well-formed rows or a reason they are malformed.

Fields are checked as bytes: `bytes.isdigit` accepts only ASCII 0-9, so no
unicode digit, sign, `_` or inner space slips into `int()`.

`read_rows` is the one parser; `parse_row` runs it on a single line. Lines
are cut by `ledger.lines` (the byte-order mark, over-long lines). The
per-line checks are written flat inside the loop because this runs once per
input row and, on CPython, a helper call costs about as much as a field check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ledger.amounts import digits_value, parse_amount
from ledger.errors import MalformedRow
from ledger.lines import MAX_LINE, Line, Lines, OverLong, content_length
from ledger.model import DEPOSIT, WITHDRAWAL, TxKind

MAX_CLIENT = 65_535
MAX_TX = 4_294_967_295
HEADER = (b"type", b"client", b"tx", b"amount")

#: A well-formed row: kind, client, tx, amount in units (0 where the kind takes none).
Row = tuple[TxKind, int, int, int]
#: What the reader yields: the line number, then the row.
NumberedRow = tuple[int, TxKind, int, int, int]

_QUOTE = ord('"')  # `int in bytes` is a memchr, 8x cheaper than `b'"' in line`
_KINDS = {kind.value.encode(): kind for kind in TxKind}


def read_rows(
    source: Iterable[bytes] | Lines, on_malformed: Callable[[int, str], None]
) -> Iterator[NumberedRow]:
    """Yield (line number, kind, client, tx, amount) for every well-formed row, in order.

    `source` is the input's bytes in chunks cut anywhere (fixed-size reads, a
    binary file's lines, `data.splitlines(keepends=True)`, `[data]`), or a
    `Lines` over them, to learn how many lines there were.

    Malformed rows go to `on_malformed(line_number, detail)` instead (R7); it
    may raise to stop the reading. Blank lines are skipped (R1), and so is the
    first non-blank line if it is the header (R2). A byte-order mark that
    starts the input is ignored (R22); a line over MAX_LINE bytes is
    malformed, and not blank (R23). Line numbers count every physical line
    from 1, as an editor shows them.
    """
    numbered = enumerate(source if isinstance(source, Lines) else Lines(source), 1)
    for number, line in numbered:  # R2: up to the first non-blank line
        if isinstance(line, bytes):
            if not line.strip():
                continue
            if is_header(line):
                break
        # Data; also an over-long line, which is not blank whatever it holds (R23).
        yield from _rows(((number, line),), on_malformed)
        break
    yield from _rows(numbered, on_malformed)


def parse_row(line: bytes) -> Row:
    """Parse one non-blank data line (its line ending may be attached); raise MalformedRow."""
    length = content_length(line)
    if length > MAX_LINE:
        raise MalformedRow(OverLong(length).detail)  # R23
    problems: list[str] = []
    for _, kind, client, tx, amount in _rows(((1, line),), lambda _n, d: problems.append(d)):
        return kind, client, tx, amount
    raise MalformedRow(problems[0] if problems else "blank line")


def is_header(line: bytes) -> bool:
    """R2: the exact header, once each field is trimmed."""
    return tuple(field.strip() for field in line.split(b",")) == HEADER


def _rows(
    numbered: Iterable[tuple[int, Line]], on_malformed: Callable[[int, str], None]
) -> Iterator[NumberedRow]:
    for number, line in numbered:
        if isinstance(line, OverLong):
            on_malformed(number, line.detail)  # R23
            continue
        try:
            if _QUOTE in line:
                raise MalformedRow("quotes are not allowed")  # R1
            fields = line.split(b",")
            count = len(fields)
            if count != 4 and count != 3:
                if not line.strip():
                    continue  # R1: blank lines are skipped (they split into one field)
                raise MalformedRow(f"{count} fields, expected 3 or 4")  # R6
            kind = _KINDS.get(fields[0].strip())
            if kind is None:
                raise MalformedRow(f"unknown type {_show(fields[0])}")  # R3
            raw = fields[1].strip()  # R4
            if not raw.isdigit():
                raise MalformedRow(f"client is not a plain integer: {_show(raw)}")
            client = int(raw) if len(raw) < 20 else digits_value(raw)
            if client > MAX_CLIENT:
                raise MalformedRow(f"client {_show(raw)} is above {MAX_CLIENT}")
            raw = fields[2].strip()
            if not raw.isdigit():
                raise MalformedRow(f"tx is not a plain integer: {_show(raw)}")
            tx = int(raw) if len(raw) < 20 else digits_value(raw)
            if tx > MAX_TX:
                raise MalformedRow(f"tx {_show(raw)} is above {MAX_TX}")
            if kind is DEPOSIT or kind is WITHDRAWAL:
                if count == 3:
                    raise MalformedRow(f"{kind} needs an amount")  # R5
                amount = parse_amount(fields[3].strip())
                if amount == 0:
                    raise MalformedRow(f"{kind} amount must be > 0")
            else:
                amount = 0  # R5: whatever the amount column holds is ignored
        except MalformedRow as exc:
            on_malformed(number, exc.detail)
            continue
        yield number, kind, client, tx, amount


def _show(raw: bytes) -> str:
    text = raw.strip().decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 40 else text[:37] + "...")
