"""Golden files through the real `process-csv` console script (SPEC R1-R21).

Each case in tests/fixtures/golden is one input and its exact expected stdout,
worked out by hand from SPEC; the README there maps every case to the rules it
checks. A case with a NAME.stderr.txt also pins the per-row reports (R7, R19)
and the closing summary line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import GOLDEN_DIR, run, stderr_lines_without_malformed_detail

CASES = sorted(path.name.removesuffix(".in.csv") for path in GOLDEN_DIR.glob("*.in.csv"))


def _case(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.in.csv"


def test_every_golden_input_has_an_expected_output() -> None:
    assert CASES, f"no golden cases found in {GOLDEN_DIR}"
    missing = [name for name in CASES if not (GOLDEN_DIR / f"{name}.expected.csv").is_file()]
    assert missing == []


@pytest.mark.parametrize("name", CASES)
def test_stdout_is_exactly_the_expected_snapshot(name: str) -> None:
    """R20, R21: header, one row per account sorted by client, 4 decimals, `\\n` endings."""
    result = run(_case(name))

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == (GOLDEN_DIR / f"{name}.expected.csv").read_bytes()


STDERR_CASES = sorted(name for name in CASES if (GOLDEN_DIR / f"{name}.stderr.txt").is_file())


@pytest.mark.parametrize("name", STDERR_CASES)
def test_stderr_reports_each_bad_row_and_ends_with_the_summary(name: str) -> None:
    """R7, R19: one `line N: REASON: client C, tx T` (or `line N: malformed: ...`)
    per rejected row, in input order, then the summary line."""
    result = run(_case(name))

    expected = (GOLDEN_DIR / f"{name}.stderr.txt").read_text().splitlines()
    assert stderr_lines_without_malformed_detail(result.stderr) == expected
