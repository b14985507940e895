"""How every command ends when its surroundings fail it: exit 2 and one line, never a traceback.

runner.console.run_console_script decides it once for every console script:
output that cannot be written (a full disk, an encoding the output lacks)
and memory running out (tests/e2e/test_process_csv_cli.py) end in exit 2,
the documented code for an I/O error, with one line on stderr. Uncaught,
each was a traceback and exit 1, which reads as "aborted".
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_deploy_files import console_scripts
from tests.pipeline import Pipeline, script

LIBRDKAFKA_LOG = re.compile(r"^%\d\|[\d.]+\|[A-Z]+\|rdkafka#")


def _to_a_full_disk(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `argv` with stdout on /dev/full; its exit code and its own stderr lines.

    Left out: librdkafka's `%6|...|BGQUEUE|... Purging 1 unserved events`,
    which an admin client logs now and then as the process exits (about 1
    `ledger-admin status` in 4, whatever its stdout).
    """
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            argv, env=env, stdout=full, stderr=subprocess.PIPE, timeout=120, check=False
        )
    lines = done.stderr.decode(errors="replace").splitlines()
    return done.returncode, [line for line in lines if not LIBRDKAFKA_LOG.match(line)]


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_every_console_script_writing_to_a_full_disk_exits_2_with_one_line(name: str) -> None:
    returncode, stderr = _to_a_full_disk([script(name), "--help"])

    assert returncode == 2
    assert stderr == [f"{name}: I/O error: No space left on device"]


@pytest.mark.kafka
def test_a_snapshot_to_a_full_disk_exits_2_with_one_line(pipeline: Pipeline) -> None:
    pipeline.create_topics()

    returncode, stderr = _to_a_full_disk([script("export-snapshot")], pipeline.env)

    assert returncode == 2
    assert stderr[0].startswith("as-of: ")
    assert stderr[1:] == ["export-snapshot: I/O error: No space left on device"]


@pytest.mark.kafka
def test_a_status_to_a_full_disk_exits_2_with_one_line(pipeline: Pipeline) -> None:
    pipeline.create_topics()

    returncode, stderr = _to_a_full_disk([script("ledger-admin"), "status"], pipeline.env)

    assert returncode == 2
    assert stderr == ["ledger-admin: I/O error: No space left on device"]


def _ascii_locale(env: dict[str, str]) -> dict[str, str]:
    """A C locale Python does not coerce to UTF-8 (PYTHONUTF8=0): stdio and file names ASCII."""
    kept = {k: v for k, v in env.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    return {**kept, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


@pytest.mark.kafka
def test_under_an_ascii_locale_produce_csv_publishes_a_file_with_a_non_ascii_name(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # Python holds the name's non-ASCII bytes as lone surrogates here, which
    # the journal's JSON cannot carry (it was a TypeError and exit 1).
    # process-csv's test of this locale shows the rows' reports escaped.
    csv = tmp_path / "d\u00e9p\u00f4ts.csv"
    csv.write_text("type,client,tx,amount\ndeposit,1,1,2.5\n")
    pipeline.create_topics()

    done = subprocess.run(
        [script("produce-csv"), os.fsencode(csv), "--no-progress"],
        env=_ascii_locale(pipeline.env),
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr.decode(errors="replace")
    listed = pipeline.run("ledger-admin", "ingest")
    assert listed.returncode == 0, listed.stderr
    assert str(csv) in listed.stdout.decode()  # the name a UTF-8 locale records


@pytest.mark.kafka
def test_output_its_encoding_cannot_hold_exits_2_with_one_line(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    csv = tmp_path / "\u20ac-payments.csv"  # a name that Latin-1 cannot encode
    csv.write_text("type,client,tx,amount\ndeposit,1,1,2.5\n")
    pipeline.create_topics()
    assert pipeline.run("produce-csv", str(csv), "--no-progress").returncode == 0

    listed = pipeline.run("ledger-admin", "ingest")
    assert listed.returncode == 0
    pipeline.extra_env["PYTHONIOENCODING"] = "latin-1"
    latin1 = pipeline.run("ledger-admin", "ingest")

    assert latin1.returncode == 2
    assert latin1.stderr.decode().splitlines() == [
        "ledger-admin: cannot encode '\\u20ac' as latin-1: use a UTF-8 locale (LC_ALL=C.UTF-8) "
        "or PYTHONIOENCODING=utf-8"
    ]
