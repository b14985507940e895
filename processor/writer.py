"""The worker's own producer: changelog records, rejections and dead letters.

A confluent-kafka (librdkafka) producer rather than Faust's aiokafka one: a
send costs about a microsecond in C instead of ~10 in Python, and at one or
more changelog records per event that was a third of a worker's time. Faust
still reads the changelogs back (recovery) with its own consumer; the
records are the same bytes whoever writes them.

Idempotent with acks=all: no duplicates from retries and per-partition order
kept, which the replay rule depends on (docs/exactness.md). `confirm` is the
only way a batch gets to its commit: it waits until every record sent since
the last confirm is acknowledged, and raises if any was not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, Producer

from kafkaio.errors import KafkaIOError


class WriteFailed(KafkaIOError):
    """A record of the batch was not acknowledged; the batch must not be committed."""


class Writer:
    def __init__(self, bootstrap_servers: str, timeout: float) -> None:
        self._bootstrap = bootstrap_servers
        self._timeout = timeout
        self._producer: Producer | None = None
        self._failed: list[KafkaError] = []
        #: Records handed to the client since start, per topic.
        self.sent: dict[str, int] = {}

    def _client(self) -> Producer:
        # Created on first use, not at import: building the app connects to nothing.
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self._bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    # A batch is sent in one burst and then flushed: a short
                    # linger only groups what arrives together anyway.
                    "linger.ms": 5,
                    "batch.size": 1_000_000,
                    "queue.buffering.max.messages": 2_000_000,
                    "queue.buffering.max.kbytes": 2_097_152,
                    "delivery.report.only.error": True,
                    "message.timeout.ms": int(self._timeout * 1000),
                }
            )
        return self._producer

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failed.append(error)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        self._produce(topic, key, value, kwargs)
        self.sent[topic] = self.sent.get(topic, 0) + 1

    def send_many(self, topic: str, writes: list[tuple[int, bytes, bytes]]) -> None:
        """(partition, key, value) records to one topic; the hot path of a batch."""
        produce, delivered = self._client().produce, self._delivered
        for partition, key, value in writes:
            try:
                produce(topic, value, key, partition, on_delivery=delivered)
            except BufferError:
                self._produce(topic, key, value, {"partition": partition})
        self.sent[topic] = self.sent.get(topic, 0) + len(writes)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, kwargs: Any) -> None:
        producer = self._client()
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=self._delivered, **kwargs)
                return
            except BufferError:
                producer.poll(0.05)  # the queue is full: let deliveries drain

    async def confirm(self) -> None:
        """Wait until everything sent is acknowledged; raise WriteFailed otherwise."""
        if self._producer is None:
            return
        remaining = await asyncio.to_thread(self._producer.flush, self._timeout)
        failed, self._failed = self._failed, []
        if remaining or failed:
            raise WriteFailed(f"{remaining} records unacknowledged, failures: {failed[:3]}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
