"""produce-csv's ingestion journal: a file is published once, an interrupted run resumes.

SPEC R13: withdrawals carry no id, so a file published twice would debit
every withdrawal twice. The journal (producers.journal) is what stands
between an operator re-running a job and a wrong balance.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.workload import generate
from tests.e2e.test_observability import scrape
from tests.helpers import run
from tests.pipeline import Pipeline, script

pytestmark = pytest.mark.kafka

EXIT_REFUSED = 3
HEADER = "type,client,tx,amount\n"


def _published(pipeline: Pipeline) -> int:
    """Offsets used on the input topic (records, plus transaction markers), once they settle.

    produce-csv's last commit returns before the broker has written that
    transaction's markers; until then the read_committed end of a partition
    is still the start of that transaction (seen: 1123 offsets, then 1964).
    """
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    deadline = time.monotonic() + 30
    last = sum(pipeline.end_offsets(topic).values())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(pipeline.end_offsets(topic).values())
        if now == last:
            return now
        last = now
    raise AssertionError(f"the ends of {topic} still move after 30 s")


def _stdin(pipeline: Pipeline, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [script("produce-csv"), "-", "--no-progress", "--create-topic", *args],
        input=data,
        env=pipeline.env,
        capture_output=True,
        timeout=120,
    )


def _ingest(pipeline: Pipeline) -> list[dict[str, str]]:
    listed = pipeline.run("ledger-admin", "ingest")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.decode().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def test_the_same_file_published_twice_is_refused_and_nothing_is_published_again(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R13 (issue 15)
    csv = tmp_path / "day.csv"
    csv.write_text("".join(generate(2_000, 50, seed=3, dirty=True)))
    assert pipeline.produce(csv).returncode == 0
    published = _published(pipeline)

    again = pipeline.produce(csv)
    assert again.returncode == EXIT_REFUSED, again.stderr
    assert b"already published completely" in again.stderr
    assert _published(pipeline) == published
    # A copy under another name is the same content, the same input.
    copy = tmp_path / "copy-of-day.csv"
    copy.write_bytes(csv.read_bytes())
    assert pipeline.produce(copy).returncode == EXIT_REFUSED
    [entry] = _ingest(pipeline)
    assert (entry["name"], entry["run"], entry["state"]) == (str(csv), "1", "complete")

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(csv).stdout


def test_force_publishes_a_file_again_and_the_journal_records_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R13: by design, every row applies twice
    csv = tmp_path / "day.csv"
    rows = list(generate(1_000, 40, seed=4))
    csv.write_text("".join(rows))
    twice = tmp_path / "twice.csv"
    twice.write_text("".join(rows) + "".join(rows[1:]))
    assert pipeline.produce(csv).returncode == 0
    forced = pipeline.produce(csv, "--force")
    assert forced.returncode == 0, forced.stderr
    [entry] = _ingest(pipeline)
    assert (entry["run"], entry["state"]) == ("2", "complete")
    assert entry["rows"] == str(len(rows) - 1)

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(twice).stdout


def test_a_changed_file_under_the_same_name_is_a_new_input(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 15
    csv = tmp_path / "day.csv"
    csv.write_text(HEADER + "deposit,1,1,5.0\n")
    assert pipeline.produce(csv).returncode == 0
    csv.write_text(HEADER + "deposit,1,2,7.0\n")
    changed = pipeline.produce(csv)
    assert changed.returncode == 0, changed.stderr
    assert {e["state"] for e in _ingest(pipeline)} == {"complete"}
    assert len(_ingest(pipeline)) == 2


def test_a_half_published_file_then_edited_is_refused_unless_forced(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 15: say what happens
    # --on-error abort stops the run at line 4: lines 2-3 are published.
    csv = tmp_path / "day.csv"
    csv.write_text(HEADER + "deposit,1,1,5.0\ndeposit,2,2,6.0\ndeposit,3,oops,1.0\n")
    first = pipeline.produce(csv, "--on-error", "abort")
    assert first.returncode == 1, first.stderr
    [entry] = _ingest(pipeline)
    assert (entry["state"], entry["lines"], entry["rows"]) == ("unfinished", "3", "2")

    # Re-run as is: resumes after line 3, and stops at the same bad line.
    again = pipeline.produce(csv, "--on-error", "abort")
    assert again.returncode == 1
    assert b"resumed after line 3 (2 rows published before)" in again.stderr

    # Fixed by hand: new content, same name, the old run unfinished.
    csv.write_text(HEADER + "deposit,1,1,5.0\ndeposit,2,2,6.0\ndeposit,3,3,1.0\n")
    published = _published(pipeline)
    edited = pipeline.produce(csv)
    assert edited.returncode == EXIT_REFUSED, edited.stderr
    assert b"stopped after line 3" in edited.stderr
    assert _published(pipeline) == published
    forced = pipeline.produce(csv, "--force")
    assert forced.returncode == 0, forced.stderr

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    # Clients 1 and 2 twice (the half run, then the forced edit): R12 refuses
    # a repeated deposit tx, so their balances stay single; client 3 once.
    assert exported.stdout == run(csv).stdout


def test_standard_input_without_a_source_id_is_not_journaled_and_says_so(
    pipeline: Pipeline,
) -> None:  # issue 15
    data = (HEADER + "deposit,1,1,5.0\n").encode()
    for _ in range(2):
        done = _stdin(pipeline, data)
        assert done.returncode == 0, done.stderr
        assert b"not journaled" in done.stderr
    assert _published(pipeline) == 2


def test_standard_input_with_a_source_id_resumes_after_the_last_line_published(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 15
    broken = (HEADER + "deposit,1,1,5.0\nwithdrawal,1,2,1.0\ndeposit,x\n").encode()
    first = _stdin(pipeline, broken, "--source-id", "feed-7", "--on-error", "abort")
    assert first.returncode == 1, first.stderr
    fixed = (HEADER + "deposit,1,1,5.0\nwithdrawal,1,2,1.0\ndeposit,1,3,2.0\n").encode()
    second = _stdin(pipeline, fixed, "--source-id", "feed-7")
    assert second.returncode == 0, second.stderr
    assert b"resumed after line 3" in second.stderr
    assert _stdin(pipeline, fixed, "--source-id", "feed-7").returncode == EXIT_REFUSED

    pipeline.start_worker()
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    whole = tmp_path / "whole.csv"
    whole.write_bytes(fixed)
    assert exported.stdout == run(whole).stdout  # the withdrawal once: 6.0000


def test_a_worker_passes_the_journals_commit_markers_without_asking_the_broker(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 12: the markers' holes are explained by what the consumer read
    csv = tmp_path / "day.csv"
    csv.write_text("".join(generate(20_000, 60, seed=5)))
    # A transaction every 10 ms: a few commit markers per partition.
    assert pipeline.produce(csv, "--commit-interval", "0.01").returncode == 0
    markers = _published(pipeline) - 20_000
    assert markers > 10, markers

    worker = pipeline.start_worker(web=True)
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(csv).stdout
    holes = {
        dict(labels)["resolved"]: value
        for (name, labels), value in scrape(pipeline.web_url(worker, "/metrics")).items()
        if name == "ledger_input_holes_total"
    }
    # Every hole was a marker the consumer had read: none was asked about
    # (processor.control_batches). Without the patch each one is a question.
    assert holes.get("marker_read", 0) > 0, holes
    assert holes.get("asked", 0) == 0, holes
