"""Every golden fixture through the Kafka pipeline, in one run.

Starting a worker group per fixture would cost a group join each, so the
fixtures share one topic: each (fixture, client) pair gets its own client id
(R18: clients are independent), and the expected snapshot is the golden one
with the same renaming. Malformed rows never reach Kafka (produce-csv
refuses them, R7), so only well-formed rows are carried over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import read_rows
from ledger.amounts import format_amount
from ledger.model import AMOUNT_KINDS
from tests.helpers import GOLDEN_DIR, SNAPSHOT_HEADER
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


def test_the_golden_fixtures_come_out_of_the_workers_as_out_of_process_csv(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R1-R21
    ids: dict[tuple[str, int], int] = {}
    lines = ["type,client,tx,amount\n"]
    expected: list[tuple[int, bytes]] = []
    for case in sorted(GOLDEN_DIR.glob("*.in.csv")):
        name = case.name.removesuffix(".in.csv")
        rows = read_rows(case.read_bytes().splitlines(keepends=True), lambda _n, _d: None)
        for _line, kind, client, tx, amount in rows:
            new = ids.setdefault((name, client), len(ids) + 1)
            shown = format_amount(amount) if kind in AMOUNT_KINDS else ""
            lines.append(f"{kind.value},{new},{tx},{shown}\n")
        golden = (GOLDEN_DIR / f"{name}.expected.csv").read_bytes().splitlines(keepends=True)
        for row in golden[1:]:
            client, rest = row.split(b",", 1)
            expected.append((ids[(name, int(client))], rest))
    assert len(ids) < 65_536
    csv = tmp_path / "all.csv"
    csv.write_text("".join(lines))

    pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    want = SNAPSHOT_HEADER + b"".join(b"%d,%s" % (c, rest) for c, rest in sorted(expected))
    assert exported.stdout == want
