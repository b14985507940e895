"""CSV rows R1-R7: the parser against hand-picked rows and against the regex oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import MalformedRow, TxKind, parse_row, read_rows
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
