"""CSV rows R1-R7: the parser against hand-picked rows and against the regex oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import MalformedRow, TxKind, parse_row, read_rows
from tests.fuzzing import examples
from tests.unit.oracle import oracle_parse

D, W, DIS, RES, CB = TxKind


@pytest.mark.parametrize(
    ("line", "row"),
    [
        (b"deposit,1,2,3.5\n", (D, 1, 2, 35_000)),
        (b"  withdrawal ,\t1 , 2 ,  3  \r\n", (W, 1, 2, 30_000)),  # R1 trimming, CRLF
        (b"dispute,1,2\n", (DIS, 1, 2, 0)),  # R6: 3 fields
        (b"dispute,1,2,\n", (DIS, 1, 2, 0)),
        (b"resolve,1,2,garbage\n", (RES, 1, 2, 0)),  # R5: ignored for resolve
        (b"chargeback,1,2,-7\n", (CB, 1, 2, 0)),
        (b"deposit,65535,4294967295,1", (D, 65_535, 4_294_967_295, 10_000)),  # R4 bounds
        (b"deposit,0001,007,.5", (D, 1, 7, 5_000)),  # leading zeros
    ],
)
def test_well_formed_rows_parse(line: bytes, row: tuple) -> None:
    assert parse_row(line) == row


@pytest.mark.parametrize(
    "line",
    [
        b'deposit,"1",2,3\n',  # R1 quotes
        b"deposit,1,2,3,4\n",  # R6 five fields
        b"deposit,1\n",  # R6 two fields
        b"Deposit,1,2,3\n",  # R3 case
        b"transfer,1,2,3\n",  # R3 unknown
        b"deposit,65536,2,3\n",  # R4 client bound
        b"deposit,1,4294967296,3\n",  # R4 tx bound
        b"deposit,-1,2,3\n",  # R4 sign
        b"deposit,+1,2,3\n",
        b"deposit,1 2,2,3\n",
        b"deposit,1,2\n",  # R5 amount required
        b"deposit,1,2,\n",
        b"deposit,1,2,0\n",  # R5 > 0
        b"withdrawal,1,2,0.0000\n",
        b"deposit,1,2,1.00001\n",  # R5 4 decimals
        b"deposit,1,2,1e3\n",
        b"deposit,1,2,922337203685477.5808\n",
        b"deposit,\xd9\xa1,2,3\n",  # a unicode digit
    ],
)
def test_malformed_rows_raise(line: bytes) -> None:  # R7
    with pytest.raises(MalformedRow):
        parse_row(line)


def _numbers(text: bytes) -> tuple[list[int], list[int]]:
    bad: list[int] = []
    good = [
        row[0] for row in read_rows(text.splitlines(keepends=True), lambda n, _d: bad.append(n))
    ]
    return good, bad


def test_the_exact_header_is_skipped_and_counts_as_line_one() -> None:  # R2
    assert _numbers(b"type,client,tx,amount\ndeposit,1,1,1\n") == ([2], [])


def test_a_header_with_spaces_is_still_the_header() -> None:  # R2
    assert _numbers(b" type , client,tx , amount \r\ndeposit,1,1,1\r\n") == ([2], [])


def test_without_a_header_the_first_line_is_data() -> None:  # R2
    assert _numbers(b"deposit,1,1,1\ndeposit,1,2,1\n") == ([1, 2], [])


def test_only_the_first_non_blank_line_may_be_the_header() -> None:  # R2
    text = b"\n  \ntype,client,tx,amount\ntype,client,tx,amount\ndeposit,1,1,1\n"
    assert _numbers(text) == ([5], [4])


def test_a_different_header_is_a_malformed_data_row() -> None:  # R2, R7
    assert _numbers(b"type,client,tx\ndeposit,1,1,1\n") == ([2], [1])


def test_blank_lines_are_skipped_but_counted() -> None:  # R1
    assert _numbers(b"deposit,1,1,1\n\n   \n\t\r\ndeposit,1,2,1\n") == ([1, 5], [])


def test_a_malformed_row_does_not_stop_the_reading() -> None:  # R7
    assert _numbers(b"deposit,1,1,1\nbad\ndeposit,1,2,1\n") == ([1, 3], [2])


# --- R22, R23: the byte-order mark and over-long lines ------------------------------------

BOM = b"\xef\xbb\xbf"


def _deposit(tx: int, n: int) -> bytes:
    """A well-formed deposit of exactly `n` bytes (leading zeros are allowed in an amount, R5)."""
    start = b"deposit,1,%d," % tx
    return start + b"0" * (n - len(start) - 1) + b"1"


def _read(data: bytes, size: int | None = None) -> tuple[list[int], list[tuple[int, str]]]:
    """Rows' line numbers and (line, detail) reports, the input cut in `size`-byte chunks
    (by default as lines, with their endings, as a file iterates them)."""
    chunks = (
        data.splitlines(keepends=True)
        if size is None
        else [data[i : i + size] for i in range(0, len(data), size)]
    )
    bad: list[tuple[int, str]] = []
    good = [row[0] for row in read_rows(chunks, lambda n, d: bad.append((n, d)))]
    return good, bad


def test_a_bom_before_the_header_does_not_stop_it_being_the_header() -> None:  # R22, R2
    for size in (None, 1, 2, 3, 4, 1000):
        assert _read(BOM + b"type,client,tx,amount\r\ndeposit,1,1,1\n", size) == ([2], [])


def test_a_bom_alone_is_an_empty_input() -> None:  # R22
    assert _read(BOM) == ([], [])
    assert _read(BOM + b"\n\n") == ([], [])


def test_a_bom_anywhere_but_the_very_start_is_bytes_of_a_field() -> None:  # R22, R3
    good, bad = _read(b"deposit,1,1,1\n" + BOM + b"deposit,1,2,1\n")
    assert good == [1]
    assert [n for n, _ in bad] == [2]
    # Not at the very start either: after a blank line the header is not recognised.
    good, bad = _read(b"\n" + BOM + b"type,client,tx,amount\ndeposit,1,1,1\n")
    assert (good, [n for n, _ in bad]) == ([3], [2])


def test_a_row_of_4096_bytes_is_read_and_one_of_4097_is_malformed() -> None:  # R23, R1
    for ending in (b"\n", b"\r\n"):
        data = _deposit(1, 4096) + ending + _deposit(2, 4097) + ending + _deposit(3, 4096)
        for size in (None, 1, 4096, 4097, 5000):
            assert _read(data, size) == ([1, 3], [(2, "line is over 4096 bytes (4097 bytes)")])


def test_an_over_long_line_is_reported_by_its_length_and_keeps_the_line_numbers() -> None:  # R23
    data = b"type,client,tx,amount\ndeposit,1,1,1\n" + b"x" * 100_000 + b"\ndeposit,1,2,1\n"
    for size in (None, 7, 65536):
        good, bad = _read(data, size)
        assert good == [2, 4]
        assert bad == [(3, "line is over 4096 bytes (100000 bytes)")]


def test_an_over_long_first_line_is_not_blank_so_a_header_after_it_is_data() -> None:
    # R23: the over-long line counts as non-empty; R2: so it is the first non-empty
    # line, not the header, and the header on the next line is a malformed data row.
    good, bad = _read(b" " * 5000 + b"\ntype,client,tx,amount\ndeposit,1,1,1\n")
    assert good == [3]
    assert bad == [(1, "line is over 4096 bytes (5000 bytes)"), (2, "unknown type 'type'")]


def test_parse_row_refuses_a_line_over_4096_bytes_without_its_ending() -> None:  # R23, R1
    assert parse_row(_deposit(1, 4096) + b"\r\n") == (D, 1, 1, 10_000)
    with pytest.raises(MalformedRow, match="over 4096 bytes"):
        parse_row(_deposit(1, 4097) + b"\r\n")


_pieces = st.sampled_from(
    [
        "deposit",
        "withdrawal",
        "dispute",
        "resolve",
        "chargeback",
        "Deposit",
        "",
        " ",
        "1",
        "0",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "01",
        "-1",
        "+1",
        "1.5",
        ".5",
        "1.",
        ".",
        "1.00001",
        "0.0000",
        "922337203685477.5807",
        "922337203685477.5808",
        "1e3",
        '"',
        "\t",
        "\u0661",  # ARABIC-INDIC DIGIT ONE
        "x",
        "12.34.5",
    ]
)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(_pieces, min_size=1, max_size=5).map(",".join), st.sampled_from(["", "\n", "\r\n"]))
def test_the_parser_agrees_with_the_regex_oracle(line: str, ending: str) -> None:  # R1-R7
    expected = oracle_parse(line)
    try:
        kind, client, tx, units = parse_row((line + ending).encode())
    except MalformedRow:
        assert expected is None, line
        return
    assert expected is not None, line
    o_kind, o_client, o_tx, o_amount = expected
    assert (kind.value, client, tx) == (o_kind, o_client, o_tx)
    assert units == (0 if o_amount is None else int(o_amount * 10_000))
