"""`produce-csv` and its input topic: created only when asked, never by a typo.

The workers create the input topic when they start (processor.startup);
produce-csv creates it only with --create-topic. Before, `--topic typo`
made a topic `typo` that no worker reads, published the whole file to it,
and exited 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaio.admin import partition_count
from kafkaio.errors import TopicMissing
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka

CSV = "type,client,tx,amount\ndeposit,1,1,2.5\n"


def _exists(pipeline: Pipeline, topic: str) -> bool:
    try:
        partition_count(pipeline.bootstrap, topic, timeout=0)
    except TopicMissing:
        return False
    return True


def test_a_missing_topic_exits_2_naming_it_and_creates_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.create_topics()
    csv = tmp_path / "in.csv"
    csv.write_text(CSV)
    typo = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"] + "-typo"

    done = pipeline.run("produce-csv", str(csv), "--no-progress", "--topic", typo)

    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"produce-csv: no topic '{typo}': is LEDGER_TRANSACTIONS_TOPIC (or --topic) right? The "
        "workers create it when they start; --create-topic creates it here"
    ]
    assert not _exists(pipeline, typo)
    assert not _exists(pipeline, f"{typo}-ingest")


def test_create_topic_creates_a_missing_topic_and_says_so(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text(CSV)
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]

    done = pipeline.run("produce-csv", str(csv), "--no-progress", "--create-topic")

    assert done.returncode == 0, done.stderr
    assert f"produce-csv: created topic '{topic}' with 4 partitions" in done.stderr.decode()
    assert partition_count(pipeline.bootstrap, topic) == pipeline.partitions


def test_create_topic_leaves_an_existing_topic_alone_and_says_nothing_of_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.create_topics()
    csv = tmp_path / "in.csv"
    csv.write_text(CSV)

    done = pipeline.run("produce-csv", str(csv), "--no-progress", "--create-topic")

    assert done.returncode == 0, done.stderr
    assert b"created topic" not in done.stderr
