"""The fused loop (`ledger.fused.apply_csv`, what process-csv runs) against the readable
path (`read_rows` + `Ledger.apply`, one row at a time) on many inputs.

Both must give the same accounts (hence the same snapshot), the same reports
in the same order with the same line numbers and details, and the same count
of applied rows, also when the reporting side stops the run (--on-error
abort). Inputs: the bench workload generator (clean and dirty, few clients so
that disputes, chargebacks and locks collide), every golden fixture, and
random rows built from edge-case fields; each fed whole and in chunks of
awkward sizes, since the fused loop cuts lines itself.
"""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workload import generate
from ledger import MAX_UNITS, Ledger, Reason, read_rows, render_csv
from ledger.fused import apply_csv
from ledger.lines import MAX_LINE, split_lines
from runner.console import ErrorPolicy, RowReporter
from runner.process_csv import apply_rows
from tests.fuzzing import examples

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
CHUNK_SIZES = (None, 1, 2, 3, 7, 64, 1000)


class Stop(Exception):
    pass


class Recorder:
    """A RowSink that records every report; with `stop_at_malformed`, raises like abort."""

    def __init__(self, stop_at_malformed: bool = False) -> None:
        self.applied = 0
        self.reports: list[tuple[object, ...]] = []
        self.stop_at_malformed = stop_at_malformed

    def malformed(self, line: int, detail: str) -> None:
        self.reports.append((line, "malformed", detail))
        if self.stop_at_malformed:
            raise Stop

    def rejected(self, line: int, reason: Reason, client: int, tx: int) -> None:
        self.reports.append((line, reason, client, tx))


def readable(data: bytes, stop: bool = False) -> tuple[str | None, list[tuple[object, ...]], int]:
    sink = Recorder(stop)
    ledger = Ledger()
    snapshot = None
    applied = 0
    try:
        # A binary file iterates lines ending at b"\n" only, as process-csv used to read them.
        for number, kind, client, tx, amount in read_rows(io.BytesIO(data), sink.malformed):
            reason = ledger.apply(kind, client, tx, amount)
            if reason is None:
                applied += 1
            else:
                sink.rejected(number, reason, client, tx)
        snapshot = render_csv(ledger.accounts)
    except Stop:
        pass
    return snapshot, sink.reports, applied


def chunked(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def fused(data: bytes, size: int | None, stop: bool = False) -> tuple[str | None, list, int]:
    sink = Recorder(stop)
    snapshot = None
    with contextlib.suppress(Stop):
        snapshot = render_csv(apply_csv(chunked(data, size), sink))
    return snapshot, sink.reports, sink.applied


def assert_same(data: bytes, sizes: tuple[int | None, ...] = CHUNK_SIZES) -> None:
    for stop in (False, True):
        expected = readable(data, stop)
        for size in sizes:
            assert fused(data, size, stop) == expected, (size, stop, data[:300])


# --- inputs -------------------------------------------------------------------------------

_FIELDS = {
    "kind": [
        "deposit", "withdrawal", "dispute", "resolve", "chargeback",
        " deposit", "withdrawal\t", "Deposit", "DISPUTE", "", "type", "x",
    ],
    "client": [
        "1", "2", "3", "1", "2", "0", "01", "001", "65535", "065535", "65536",
        " 2", "2 ", "\t3", "-1", "+1", "1.0", "", "\u0661", "1_0",
        "0" * 30 + "1", "0" * 5000 + "2", "9" * 5000,
    ],
    "tx": [
        "1", "2", "3", "4", "5", "1", "2", "3", "0", "007", "999999999", "1000000000",
        "4294967295", "4294967296", "04294967295", " 4", "5\r", "-2", "",
        "0" * 4400 + "3", "1" * 25,
    ],
    "amount": [
        "1", "2.5", "0.0001", ".5", "5.", "12.3400", "100", "3.25", "1.5", "1.5\r", " 7 ",
        "", ".", "0", "0.0000", "1.00001", "-1", "+1", "1e3", "12.34.5", '"1"', "x",
        "922337203685477.5807", "922337203685477.5808", "461168601842738.7904",
        "0" * 4400 + "1.5", "1" * 4400, "\u00a05", "5\x0b", "5\u0085",
    ],
}  # fmt: skip

_ENDINGS = ["\n", "\n", "\n", "\r\n", " \n", "\r\r\n", "\x0c\n"]
_BOM = "\ufeff"  # R22: EF BB BF once encoded
_AMOUNT_ZEROS = "deposit,1,9,"  # + zeros + "1": a well-formed row of any length (R5)
#: R23: lines around the 4096-byte limit (the ending added to them is not counted).
_LONG_LINES = [
    "x" * 4097,
    " " * 5000,  # over-long, so not blank
    _AMOUNT_ZEROS + "0" * (4096 - len(_AMOUNT_ZEROS) - 1) + "1",  # exactly 4096: applied
    _AMOUNT_ZEROS + "0" * (4097 - len(_AMOUNT_ZEROS) - 1) + "1",
    "type,client,tx,amount" + " " * 4076,  # the header, 4097 bytes: not the header
    "deposit,1,1," + "9" * 20_000,
]
_SPECIAL_LINES = [
    "", " ", "\t", "\r", "\x0b", "type,client,tx,amount", " type , client , tx , amount ",
    "deposit,1,1", "deposit,1,1,1,1", "deposit", ",,,", '"', "dispute,1,1,\"",
    "\u00a0", "deposit,1,1,1.5\x00", _BOM + "deposit,1,1,1", _BOM, "deposit,1,1," + _BOM + "1",
]  # fmt: skip


def random_input(rng: random.Random) -> bytes:
    """Rows from edge-case fields, on few clients and txs so that the rules collide."""
    lines: list[str] = []
    if rng.random() < 0.5:
        lines.append(rng.choice(["type,client,tx,amount", " type ,client,tx, amount", ""]))
    for _ in range(rng.randint(0, 40)):
        roll = rng.random()
        if roll < 0.01:  # rare: a 1-byte chunking of one takes a few ms
            lines.append(rng.choice(_LONG_LINES))
            continue
        if roll < 0.1:
            lines.append(rng.choice(_SPECIAL_LINES))
            continue
        # Mostly plain rows, so that the fast path and the rules do most of the work.
        plain = roll < 0.75
        kind = rng.choice(_FIELDS["kind"][:5] if plain else _FIELDS["kind"])
        client = rng.choice(_FIELDS["client"][:5] if plain else _FIELDS["client"])
        tx = rng.choice(_FIELDS["tx"][:8] if plain else _FIELDS["tx"])
        fields = [kind, client, tx]
        if plain and kind in ("deposit", "withdrawal"):
            if rng.random() < 0.1:
                units = rng.choice([MAX_UNITS, MAX_UNITS - 1, MAX_UNITS // 2 + 1])
            else:
                units = rng.randint(1, 100_000)
            whole, frac = divmod(units, 10_000)
            fields.append(f"{whole}.{frac:04d}".rstrip("0").rstrip(".") if frac else str(whole))
        elif rng.random() < 0.7:
            fields.append(rng.choice(_FIELDS["amount"]))
        if rng.random() < 0.05:
            fields.append(rng.choice(_FIELDS["amount"]))  # a fifth field
        lines.append(",".join(fields))
    text = "".join(line + rng.choice(_ENDINGS) for line in lines)
    if text and rng.random() < 0.3:
        text = text.rstrip("\n")  # the last line without its ending
    if rng.random() < 0.2:
        text = _BOM + text  # R22
    return text.encode("utf-8")


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("dirty", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_the_bench_workload_gives_the_same_snapshot_and_reports(seed: int, dirty: bool) -> None:
    data = "".join(generate(3000, clients=[5, 40, 300][seed % 3], seed=seed, dirty=dirty))
    assert_same(data.encode(), sizes=(None, 1, 777, 4096))


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.in.csv")), ids=lambda p: p.name)
def test_every_golden_fixture_gives_the_same_snapshot_and_reports(path: Path) -> None:
    assert_same(path.read_bytes())


def test_many_random_edge_case_inputs_give_the_same_snapshot_and_reports() -> None:
    rng = random.Random(20261124)
    for _ in range(3000):
        assert_same(random_input(rng), sizes=(None, rng.randint(1, 50)))


@settings(max_examples=examples(300), deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_edge_case_inputs_found_by_hypothesis(rng: random.Random) -> None:
    assert_same(random_input(rng), sizes=(None, 5))


@pytest.mark.parametrize("bom", ["", _BOM])
@pytest.mark.parametrize("long", _LONG_LINES)
def test_boms_and_over_long_lines_anywhere_give_the_same_snapshot_and_reports(
    long: str, bom: str
) -> None:  # R22, R23, R2
    rows = ["deposit,1,1,5", "withdrawal,1,2,1", "dispute,1,1", _BOM + "deposit,2,3,1"]
    header = "type,client,tx,amount"
    inputs = [
        [long],
        [long, header, *rows],  # over-long first: the header after it is data
        [header, long, *rows],
        ["", " ", long, header, *rows],
        [header, *rows[:2], long, long, *rows[2:], long],
    ]
    over = len(long.encode()) > MAX_LINE
    for lines in inputs:
        for ending in ("\n", "\r\n"):
            text = bom + ending.join(lines)
            for data in (text.encode(), (text + ending).encode()):
                assert_same(data, sizes=(None, 1, 7, 2048, 4095, 4096, 4097, 4099, 65536))
                # And both read them by the rules, not merely alike:
                _, reports, _ = readable(data)
                too_long = [r for r in reports if r[1] == "malformed" and "over 4096" in str(r[2])]
                assert len(too_long) == (lines.count(long) if over else 0)
                if lines[0] == header:
                    assert all(r[0] != 1 for r in reports), "the header was not recognised"


def test_the_cli_reports_are_the_same_text_under_every_policy() -> None:
    data = "".join(generate(5000, clients=50, seed=7, dirty=True)).encode()
    for policy in ErrorPolicy:
        expected = io.StringIO()
        reporter = RowReporter(policy, expected)
        ledger = Ledger()
        try:
            apply_rows(io.BytesIO(data), ledger, reporter)
            expected_snapshot = render_csv(ledger.accounts)
        except Exception as exc:  # Aborted
            expected_snapshot = type(exc).__name__
        got = io.StringIO()
        fused_reporter = RowReporter(policy, got)
        try:
            got_snapshot = render_csv(apply_csv(chunked(data, 65536), fused_reporter))
        except Exception as exc:
            got_snapshot = type(exc).__name__
        assert got_snapshot == expected_snapshot
        assert got.getvalue() == expected.getvalue()
        assert fused_reporter.summary() == reporter.summary()


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (b"\n", [b""]),
        (b"a", [b"a"]),
        (b"a\nb", [b"a", b"b"]),
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\r\n\rb\n\n", [b"a\r", b"\rb", b""]),
    ],
)
def test_split_lines_gives_the_lines_a_binary_file_gives(data: bytes, lines: list[bytes]) -> None:
    expected = [line.removesuffix(b"\n") for line in io.BytesIO(data)]
    assert expected == lines
    for size in (None, 1, 2, 3):
        got = [line for block in split_lines(chunked(data, size)) for line in block]
        assert got == lines
