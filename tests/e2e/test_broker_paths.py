"""Each Tansu workaround, on both brokers: it works on Kafka, or Kafka takes its native path.

- Partition ends are read to partition EOF on Tansu (kafkaio.admin.end_offsets,
  LEDGER_END_OFFSETS=read), because its ListOffsets under-reports them. On
  Apache Kafka the listed end is taken as it is (the EOF read agrees).
- "Workers alive" is a group description on Kafka, which lists members;
  only a description that contradicts itself (an active state with no
  members: Tansu) sends ledger-admin to its join probe.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from kafkaio.admin import end_offsets, ensure_topic, group_state, join_refused
from tests.pipeline import Pipeline, wait_until


def test_partition_ends_are_the_offset_the_next_record_gets_on_either_broker(
    pipeline: Pipeline, broker_engine: str
) -> None:
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, 3)
    producer = Producer({"bootstrap.servers": pipeline.bootstrap, "linger.ms": 50})
    sent = {0: 0, 1: 0, 2: 0}
    # Batches of 10, 5 and 3 records: on Tansu 0.6 ListOffsets answered the
    # base offset of the last batch + 1 (1, 11, 16 instead of 18).
    for size in (10, 5, 3):
        for partition in sent:
            for _ in range(size):
                producer.produce(topic, b"v", b"k", partition)
            sent[partition] += size
        producer.flush(30)
    assert pipeline.end_offsets(topic, 3) == sent
    if broker_engine == "kafka":
        # Kafka's own answer is the end: no record is read on the Kafka path
        # (the exporter's role has no Read on the input), and the EOF read,
        # were it used, would agree.
        assert pipeline.env.get("LEDGER_END_OFFSETS", "listed") == "listed"
        assert end_offsets(pipeline.bootstrap, topic, 3, by_reading=True) == sent


@pytest.mark.kafka
def test_on_kafka_a_listed_end_stops_before_an_open_transaction_and_passes_it_once_committed(
    pipeline: Pipeline, broker_engine: str
) -> None:
    """A listed end is the last stable offset: `export-snapshot --wait` waits for committed rows."""
    if broker_engine != "kafka":
        pytest.skip("Tansu 0.6's last stable offset is broken (embedded.broker.client_env)")
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, 1)
    plain = Producer({"bootstrap.servers": pipeline.bootstrap})
    for _ in range(5):
        plain.produce(topic, b"v", b"k", 0)
    plain.flush(30)
    txn = Producer({"bootstrap.servers": pipeline.bootstrap, "transactional.id": "ends-probe"})
    txn.init_transactions(30)
    txn.begin_transaction()
    for _ in range(7):
        txn.produce(topic, b"v", b"k", 0)
    txn.flush(30)
    assert pipeline.end_offsets(topic, 1) == {0: 5}
    assert end_offsets(pipeline.bootstrap, topic, 1, "read_uncommitted") == {0: 12}
    txn.commit_transaction(30)
    # 7 records and the commit marker.
    wait_until(lambda: pipeline.end_offsets(topic, 1) == {0: 13}, 30, "the committed end")


def test_a_running_worker_group_is_seen_as_running_and_a_stopped_one_as_idle(
    pipeline: Pipeline, broker_engine: str
) -> None:
    group, topic = pipeline.env["LEDGER_APP_ID"], pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    worker = pipeline.start_worker(web=True)
    # Ready: the worker owns its partitions and no rebalance runs. Tansu says
    # STABLE through a start-up's second rebalance too, when a join is not refused.
    pipeline.wait_ready(worker)
    wait_until(
        lambda: group_state(pipeline.bootstrap, group).state == "STABLE",
        90,
        "the worker group to be stable",
    )
    state = group_state(pipeline.bootstrap, group)
    if broker_engine == "kafka":
        # Native path: the description lists the member; no probe is needed.
        assert state.members == 1, state
    else:
        # Tansu lists no members: only the join probe tells (and it is refused).
        assert state.members == 0, state
        assert join_refused(pipeline.bootstrap, group, topic)
    assert not state.idle
    assert pipeline.stop_worker(worker) == 0
    deadline = time.monotonic() + 60
    while not group_state(pipeline.bootstrap, group).idle and time.monotonic() < deadline:
        if broker_engine != "kafka" and not join_refused(pipeline.bootstrap, group, topic):
            break  # Tansu: the probe's join succeeded, so nobody else is in the group
        time.sleep(0.5)
    if broker_engine == "kafka":
        assert group_state(pipeline.bootstrap, group).idle


def test_the_offset_probe_answers_several_partitions_at_once_and_keeps_nothing_assigned(
    pipeline: Pipeline,
) -> None:
    """The worker's marker check (processor.agent `_past_skips`) asks all its holes in one go."""
    from kafkaio.admin import OffsetProbe
    from kafkaio.settings import Settings

    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, 3)
    txn = Producer({"bootstrap.servers": pipeline.bootstrap, "transactional.id": f"{topic}-p"})
    txn.init_transactions(30)
    for size in (3, 2):  # partition 0: records 0-2, a marker at 3, records 4-5, a marker at 6
        txn.begin_transaction()
        for _ in range(size):
            txn.produce(topic, b"v", b"k", 0)
        txn.commit_transaction(30)
    plain = Producer({"bootstrap.servers": pipeline.bootstrap})
    for _ in range(2):  # partition 1: records 0-1; partition 2: empty
        plain.produce(topic, b"v", b"k", 1)
    plain.flush(30)
    probe = OffsetProbe(pipeline.bootstrap, Settings.from_env(pipeline.env).isolation_level)
    try:
        wanted = {0: 3, 1: 2, 2: 0}
        assert probe.next_records_or_ends(topic, wanted) == {
            0: (4, True),  # past the marker: the next record
            1: (2, False),  # at the end
            2: (0, False),  # an empty partition
        }
        assert probe.first_offsets_from(topic, {0: 0, 1: 1}) == {0: 0, 1: 1}
        # Nothing left assigned: an assignment is prefetched in the background.
        assert probe._consumer is not None and probe._consumer.assignment() == []
    finally:
        probe.close()
