"""The worker's assignor (processor.assignment) against a real Apache Kafka group coordinator.

When the group leader assigns while the broker's metadata lacks a subscribed
topic (just after a broker restart, before its partition leaders are
elected), the topic's partitions are assigned to nobody. aiokafka alone
looks again only after `metadata_max_age_ms` (5 minutes); the assignor asks
again each second, so the group rebalances as soon as the topic is listed.

The restart window is a race, so the test makes it last: the topic does not
exist when the group forms (with topic auto-creation off, as a restarting
broker has no partitions to list either), and is created afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer

from embedded.kafka import KafkaBroker
from kafkaio.admin import ensure_topic
from processor.assignment import UrlSharingRoundRobin

pytestmark = [pytest.mark.kafka]

#: Far below aiokafka's 5-minute metadata refresh, far above one second's.
WAIT = 30.0


def test_a_group_formed_before_its_topic_had_partitions_is_given_them_once_the_broker_lists_them(
    own_kafka: Callable[..., KafkaBroker],
) -> None:
    broker = own_kafka(config={"auto.create.topics.enable": "false"})
    topic = f"late-{uuid.uuid4().hex[:6]}"
    assigned = asyncio.run(_assignment_after_creation(broker.bootstrap, topic))
    assert assigned == {0, 1, 2}, f"after {WAIT}s the group still held {assigned} of {topic}"


async def _assignment_after_creation(bootstrap: str, topic: str) -> set[int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"late-{topic}",
        enable_auto_commit=False,
    )
    UrlSharingRoundRobin().bind(consumer)
    await consumer.start()
    try:
        # Subscribed after start(), which would otherwise wait for the topic.
        consumer.subscribe([topic])
        # One poll joins the group; the leader (this member) assigns nothing.
        await consumer.getmany(timeout_ms=3000)
        assert consumer.assignment() == set(), "the topic existed before it was created"
        await asyncio.to_thread(ensure_topic, bootstrap, topic, 3)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and len(consumer.assignment()) < 3:
            await consumer.getmany(timeout_ms=500)
        return {tp.partition for tp in consumer.assignment()}
    finally:
        await consumer.stop()
