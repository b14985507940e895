"""Each Tansu workaround, on both brokers: it works on Kafka, or Kafka takes its native path.

- Partition ends are read to partition EOF (kafkaio.admin.end_offsets),
  because Tansu's ListOffsets under-reports them. On Apache Kafka the
  reported high watermark is already right and the EOF read agrees with it.
- "Workers alive" is a group description on Kafka, which lists members;
  only a description that contradicts itself (an active state with no
  members: Tansu) sends ledger-admin to its join probe.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

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
    assert end_offsets(pipeline.bootstrap, topic, 3) == sent
    if broker_engine == "kafka":
        # Kafka's own answer agrees: on Kafka the EOF read is a check, not a repair.
        consumer = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": "probe"})
        try:
            reported = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in sent
            }
        finally:
            consumer.close()
        assert reported == sent


def test_a_running_worker_group_is_seen_as_running_and_a_stopped_one_as_idle(
    pipeline: Pipeline, broker_engine: str
) -> None:
    group, topic = pipeline.env["LEDGER_APP_ID"], pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    worker = pipeline.start_worker()
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
