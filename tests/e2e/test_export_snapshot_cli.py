"""`export-snapshot` as an operator meets it: a wrong app id, an empty ledger, its file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.helpers import SNAPSHOT_HEADER
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("wait", [[], ["--wait", "--timeout", "60"]], ids=["now", "wait"])
def test_a_wrong_app_id_exits_2_naming_the_missing_changelog(
    pipeline: Pipeline, wait: list[str]
) -> None:
    pipeline.create_topics()  # the right app id's, and the input topic
    typo = pipeline.env["LEDGER_APP_ID"] + "-typo"

    done = pipeline.run("export-snapshot", "--app-id", typo, *wait)

    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"export-snapshot: no topic '{typo}-accounts-changelog': is LEDGER_APP_ID (or --app-id) "
        f"right? The workers of app id '{typo}' create it when they start"
    ]


def test_an_app_id_whose_topics_exist_but_are_empty_gives_the_header_alone(
    pipeline: Pipeline,
) -> None:
    pipeline.create_topics()

    done = pipeline.run("export-snapshot")

    assert done.returncode == 0, done.stderr
    assert done.stdout == SNAPSHOT_HEADER


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_snapshot_file_is_readable_by_its_owner_alone(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.create_topics()
    out = tmp_path / "accounts.csv"

    done = pipeline.run("export-snapshot", "--output", str(out))

    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == SNAPSHOT_HEADER
    assert _mode(out) == 0o600


def test_mode_gives_a_snapshot_file_other_permissions(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.create_topics()
    out = tmp_path / "accounts.csv"

    done = pipeline.run("export-snapshot", "--output", str(out), "--mode", "0640")

    assert done.returncode == 0, done.stderr
    assert _mode(out) == 0o640


@pytest.mark.parametrize(
    "args",
    [
        ["--output", "accounts.csv", "--mode", "0648"],
        ["--output", "accounts.csv", "--mode", "rw"],
        ["--mode", "0640"],
    ],
    ids=["not octal", "not a number", "no --output"],
)
def test_a_mode_that_cannot_apply_is_a_usage_error(pipeline: Pipeline, args: list[str]) -> None:
    done = pipeline.run("export-snapshot", *args)

    assert done.returncode == 2
    assert b"Usage:" in done.stderr
    assert b"Traceback" not in done.stderr
