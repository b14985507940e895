"""The bounded line reader (`ledger.lines`) against the obvious reading of R1, R22 and R23.

`reference_lines` below is the rule written the plain way, holding the whole
input; `split_lines` must give the same lines for every way of cutting the
input into chunks (1 byte, around the limit, around its 2048-byte check
windows, whole), and must never hold an over-long line: memory is measured.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.lines import BOM, MAX_LINE, Line, Lines, OverLong, split_lines
from tests.fuzzing import examples

CHUNK_SIZES = (None, 1, 2, 3, 5, 64, 2047, 2048, 2049, 4095, 4096, 4097, 4098, 8192, 10_000)


def reference_lines(data: bytes) -> list[Line]:
    """R22: drop a leading BOM; R1: lines end at `\\n` (a `\\r` before it is part of the
    ending); R23: longer than MAX_LINE without the ending is over-long."""
    data = data.removeprefix(BOM)
    if not data:
        return []
    pieces = data.split(b"\n")
    ended = [True] * (len(pieces) - 1) + [False]
    if pieces[-1] == b"":  # an input ending in `\n` has no empty line after it
        pieces.pop()
        ended.pop()
    lines: list[Line] = []
    for piece, has_newline in zip(pieces, ended, strict=True):
        length = len(piece) - (has_newline and piece.endswith(b"\r"))
        lines.append(OverLong(length) if length > MAX_LINE else piece)
    return lines


def chunked(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def cut(data: bytes, size: int | None) -> list[Line]:
    lines: list[Line] = []
    for block in split_lines(chunked(data, size)):
        if isinstance(block, OverLong):
            lines.append(block)
        else:
            assert block, "an empty block"
            lines.extend(block)
    return lines


def assert_cut_like_the_rule(data: bytes, sizes: tuple[int | None, ...] = CHUNK_SIZES) -> None:
    expected = reference_lines(data)
    for size in sizes:
        assert cut(data, size) == expected, (size, data[:80])


# --- R23: the limit, and what "not counting its line ending" means -------------------------

X = b"x"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (X * 4096 + b"\n", [X * 4096]),  # R23: exactly the limit is allowed
        (X * 4097 + b"\n", [OverLong(4097)]),  # R23: one byte more is not
        (X * 4096 + b"\r\n", [X * 4096 + b"\r"]),  # R1: `\r\n` is the ending, not counted
        (X * 4097 + b"\r\n", [OverLong(4097)]),
        (X * 4095 + b"\r\r\n", [X * 4095 + b"\r\r"]),  # only the last `\r` is the ending's
        (X * 4096 + b"\r\r\n", [OverLong(4097)]),
        (X * 4096, [X * 4096]),  # the last line without an ending
        (X * 4097, [OverLong(4097)]),
        # No `\n` after it, so this `\r` is no line ending (R1): it counts.
        (X * 4096 + b"\r", [OverLong(4097)]),
        (X * 4095 + b"\r", [X * 4095 + b"\r"]),
        (X * 10_000 + b"\r\n" + X * 3 + b"\n", [OverLong(10_000), X * 3]),
        (b"\n" * 3 + X * 5000, [b"", b"", b"", OverLong(5000)]),
        (X * 5000 + b"\n" + X * 6000 + b"\n" + X * 7000, [OverLong(n) for n in (5000, 6000, 7000)]),
        (b" " * 5000 + b"\n", [OverLong(5000)]),  # whatever it holds
    ],
)
def test_lines_up_to_4096_bytes_pass_and_longer_ones_come_out_as_over_long(
    data: bytes, expected: list[Line]
) -> None:  # R23, R1
    assert reference_lines(data) == expected
    assert_cut_like_the_rule(data)


def test_an_over_long_line_at_the_end_without_a_newline_is_measured_to_its_last_byte() -> None:
    # R23: no ending to leave out, so every byte counts, for every chunking.
    data = b"deposit,1,1,1\n" + b"7" * 123_457
    assert_cut_like_the_rule(data)
    assert cut(data, 1000)[-1] == OverLong(123_457)


def test_the_detail_says_over_4096_bytes_and_the_length_never_the_content() -> None:  # R23
    (over,) = cut(b"deposit,1,1," + b"9" * 9000 + b"\n", 4096)
    assert isinstance(over, OverLong)
    assert over.detail == "line is over 4096 bytes (9012 bytes)"


# --- R22: the byte-order mark --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (BOM, []),  # a BOM alone is an empty input
        (BOM + b"\n", [b""]),
        (BOM + b"type,client,tx,amount\n", [b"type,client,tx,amount"]),
        (BOM + BOM + b"a\n", [BOM + b"a"]),  # only one, at the very start
        (b"a\n" + BOM + b"b\n", [b"a", BOM + b"b"]),  # elsewhere it is bytes of a line
        (b"\n" + BOM, [b"", BOM]),
        (b" " + BOM, [b" " + BOM]),
        (BOM[:2], [BOM[:2]]),  # half a BOM is bytes
        (BOM[:2] + b"\n", [BOM[:2]]),
        (BOM + X * 4096 + b"\n", [X * 4096]),  # R23: the BOM is not part of line 1
        (BOM + X * 4097 + b"\n", [OverLong(4097)]),
    ],
)
def test_a_bom_is_dropped_only_at_the_very_start_however_the_input_is_cut(
    data: bytes, expected: list[Line]
) -> None:  # R22
    assert reference_lines(data) == expected
    assert_cut_like_the_rule(data)


def test_a_bom_split_over_three_chunks_is_still_dropped() -> None:  # R22
    chunks = [b"", BOM[:1], b"", BOM[1:2], BOM[2:] + b"a", b"\nb"]
    assert list(Lines(chunks)) == [b"a", b"b"]


# --- counting, and random inputs ---------------------------------------------------------


def test_lines_counts_every_physical_line_over_long_ones_included() -> None:
    lines = Lines(chunked(BOM + b"a\n\n" + X * 5000 + b"\r\nb\n", 3))
    assert list(lines) == [b"a", b"", OverLong(5000), b"b"]
    assert lines.count == 4


_PIECES = [b"\n", b"\r\n", b"\r", b"a", b",", b" ", BOM, BOM[:1], b"\x00"]


def random_data(rng: random.Random) -> bytes:
    """Short and long runs around the limit, endings, stray `\\r`s and BOMs."""
    parts = [BOM] if rng.random() < 0.3 else []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.25:
            parts.append(X * rng.choice([4094, 4095, 4096, 4097, 4098, 2047, 2048, 2049, 9000]))
        else:
            parts.append(rng.choice(_PIECES) * rng.randint(1, 3))
    return b"".join(parts)


def test_random_inputs_are_cut_like_the_rule_for_every_chunking() -> None:  # R1, R22, R23
    rng = random.Random(4096)
    for _ in range(300):
        data = random_data(rng)
        assert_cut_like_the_rule(data, sizes=(None, rng.randint(1, 9), rng.randint(10, 5000)))


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_short_random_bytes_are_cut_like_the_rule(data: bytes, size: int) -> None:  # R1, R22
    assert cut(data, size) == reference_lines(data)


# --- R23: memory bounded by the limit, not by the line ----------------------------------


def endless_line(total: int, chunk: bytes) -> Iterator[bytes]:
    """`total` bytes of one line, handed over as the same chunk again and again.

    The chunk is made before memory is traced, so whatever is traced is the reader's own.
    """
    for _ in range(total // len(chunk)):
        yield chunk


def test_a_256_mb_line_is_read_holding_no_more_than_the_limit() -> None:  # R23
    chunk = b"\x00" * (1 << 20)
    tracemalloc.start()
    try:
        blocks = list(split_lines(endless_line(256 << 20, chunk)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blocks == [OverLong(256 << 20)]
    assert peak < 64 * 1024, f"peak {peak} bytes"


def test_a_long_line_cut_in_chunks_smaller_than_the_limit_holds_at_most_about_the_limit() -> (
    None
):  # R23
    chunk = b"y" * 1000
    tracemalloc.start()
    try:
        chunks = itertools.chain([b"a\n"], endless_line(20_000_000, chunk), [b"\r\nb\n"])
        blocks = list(split_lines(chunks))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blocks == [[b"a"], OverLong(20_000_000), [b"b"]]
    assert peak < 4 * MAX_LINE, f"peak {peak} bytes"
