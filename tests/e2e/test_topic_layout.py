"""A worker refuses to start on topics whose partition count is not LEDGER_PARTITIONS (issue 12).

A client's partition is murmur2 of its key modulo the count (SPEC M1), and
changelog partition N holds the state of input partition N: with another
count, events and state would be looked for in the wrong places. The worker
exits 78 (misconfigured: a restart cannot help) and says what differs.
"""

from __future__ import annotations

import pytest

from kafkaio.admin import ensure_topic
from processor.startup import EXIT_MISCONFIGURED
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("which", ["transactions", "accounts", "deposits"])
def test_a_worker_refuses_topics_with_another_partition_count(
    pipeline: Pipeline, which: str
) -> None:
    env = pipeline.env
    topic = (
        env["LEDGER_TRANSACTIONS_TOPIC"]
        if which == "transactions"
        else f"{env['LEDGER_APP_ID']}-{which}-changelog"
    )
    ensure_topic(pipeline.bootstrap, topic, pipeline.partitions - 1)
    worker = pipeline.start_worker()
    assert worker.wait(timeout=120) == EXIT_MISCONFIGURED, pipeline.logs()
    expected = f"{topic!r} has {pipeline.partitions - 1} partitions, LEDGER_PARTITIONS says"
    assert expected in pipeline.logs()
