"""The worker's own producers: one Kafka transaction per input partition per batch.

Each input partition p this worker owns has its own confluent-kafka
(librdkafka) producer with `transactional.id = <app id>-ledger-<p>`. A
batch's changelog records of p, the rejections and dead letters of p's
records, and last p's position record (the next input offset its state
reflects, processor.state) are one transaction of that producer: a
read_committed reader sees all of them or none (docs/exactness.md).

Why a producer per partition, not one per worker: the transactional id is
what fences a zombie. The next owner of p calls `init_transactions` with
the same id before it reads p's changelog (`fence`, called from
processor.recovery); the broker then aborts whatever transaction the old
owner had open and refuses every later write or commit of the old owner's
producer (PRODUCER_FENCED). A worker frozen past its session timeout (a
SIGSTOP, a VM pause, a network cut) therefore cannot land a changelog
record after the new owner has read the changelog. A per-worker id would
not fence anything: the new owner's id differs. (Kafka Streams' first
exactly-once mode used the same layout, a producer per input partition.)

Inside a transaction the position record goes last, after the rest of the
batch has been acknowledged (`_finish`). On Apache Kafka the transaction
alone makes state and position atomic for read_committed readers; the order
additionally means a position is never visible without the records it
describes to readers that do not filter aborted transactions: Tansu (it
fences producers but serves aborted records, measured) or a
read_uncommitted tool. Those readers roll back entries past the position
with the entries' own before-images (processor.batch, the replay rule), so
on them too a crashed or fenced batch is undone. Cost: one round trip per
batch (bench/README.md).

Speed: a send costs about a microsecond in C instead of ~10 in Python for
aiokafka; commits of the partitions in a batch run in parallel threads
(librdkafka releases the GIL while it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer

from kafkaio.errors import KafkaIOError
from kafkaio.security import client_config

log = logging.getLogger("ledger.worker")

#: A transaction the broker aborts by itself if its producer goes silent this
#: long (ms): it keeps readers of a crashed worker's partitions waiting at
#: most this long when no worker takes them over (a new owner aborts it at
#: once). librdkafka wants it at least message.timeout.ms.
MIN_TRANSACTION_TIMEOUT_MS = 60_000


#: Seconds init_transactions may run past its own timeout before the worker gives up on it.
FENCE_GRACE = 10.0


class WriteFailed(KafkaIOError):
    """A record or the transaction of the batch was not committed; the batch must not count."""


class Fenced(WriteFailed):
    """Another worker took the partition over: its producer fenced this one."""


Headers = list[tuple[str, str | bytes | None]]


class Outgoing(NamedTuple):
    """One record for `Writer.send_each`."""

    source: int
    topic: str
    key: bytes | None
    value: bytes | None
    #: The partition of `topic`, or -1: the client's default (by key).
    partition: int
    headers: Headers | None


def transactional_id(app_id: str, partition: int) -> str:
    return f"{app_id}-ledger-{partition}"


class _PartitionProducer:
    """The transactional producer of one input partition."""

    def __init__(self, config: dict[str, Any], partition: int) -> None:
        self.partition = partition
        self.producer = Producer(config)
        self.failed: list[KafkaError] = []
        #: A transaction was begun and not yet committed.
        self.open = False

    def delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.failed.append(error)

    def begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True


class Writer:
    def __init__(
        self,
        bootstrap_servers: str,
        app_id: str,
        timeout: float,
        unfenced: bool = False,
        debug: str = "",
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._app_id = app_id
        #: Test hook (kafkaio.settings `fault_unfenced`): ids of this process only.
        self._suffix = f"-unfenced-{os.getpid()}" if unfenced else ""
        self._timeout = timeout
        #: librdkafka debug contexts (kafkaio.settings `producer_debug`), or "".
        self._debug = debug
        self._producers: dict[int, _PartitionProducer] = {}
        # Commits of one batch's partitions run side by side; librdkafka calls
        # block, so each gets a thread of its own.
        self._threads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ledger-txn")
        #: Records handed to the client since start, per topic.
        self.sent: dict[str, int] = {}

    def _config(self, partition: int) -> dict[str, Any]:
        message_timeout_ms = int(self._timeout * 1000)
        return {
            **client_config(self._bootstrap),
            "transactional.id": transactional_id(self._app_id, partition) + self._suffix,
            "transaction.timeout.ms": max(MIN_TRANSACTION_TIMEOUT_MS, message_timeout_ms),
            "enable.idempotence": True,
            "acks": "all",
            # A batch is sent in one burst and then committed: a linger only
            # delays the last records of the burst, twice per batch (the
            # records, then the position record), so keep it short.
            "linger.ms": 1,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "delivery.report.only.error": True,
            "message.timeout.ms": message_timeout_ms,
            **({"debug": self._debug} if self._debug else {}),
        }

    @property
    def partitions(self) -> set[int]:
        return set(self._producers)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def fence(self, partitions: Iterable[int]) -> None:
        """Own these partitions' transactional ids: every earlier holder is fenced from now on.

        Must complete before the partitions' changelogs are read: any
        transaction the previous owner left open is aborted by then, and
        nothing of it can land later.
        """
        new = [p for p in partitions if p not in self._producers]
        if not new:
            return
        made = {p: _PartitionProducer(self._config(p), p) for p in new}

        async def init(p: int) -> None:
            call = self._run(made[p].producer.init_transactions, self._timeout)
            try:
                # The client's own timeout is not enough: seen in CI's broker
                # outage test, every worker's init_transactions was still
                # blocked 5 minutes after the broker came back (timeout 6 s),
                # and the ledger stood still. A bound of our own ends it; the
                # worker then stops for a restart (processor.agent `fence`).
                await asyncio.wait_for(call, self._timeout + FENCE_GRACE)
            except KafkaException as exc:
                raise WriteFailed(f"partition {p}: init_transactions failed: {exc}") from None
            except TimeoutError:
                raise WriteFailed(
                    f"partition {p}: init_transactions did not return within "
                    f"{self._timeout + FENCE_GRACE:.0f}s"
                ) from None

        await asyncio.gather(*(init(p) for p in new))
        self._producers.update(made)

    def release(self, partitions: Iterable[int]) -> None:
        """Partitions given away: drop their producers (called between batches, none is open)."""
        for p in partitions:
            gone = self._producers.pop(p, None)
            if gone is not None:
                # Closing waits for the client's threads: not on the event loop.
                self._threads.submit(_close, gone.producer, self._timeout)

    def _of(self, partition: int) -> _PartitionProducer:
        try:
            tx = self._producers[partition]
        except KeyError:
            raise WriteFailed(f"partition {partition} has no producer: not fenced here") from None
        with _failures(partition):
            tx.begin()
        return tx

    def send_many(self, topic: str, writes: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        """(partition, key, value) records to one topic, each in its partition's transaction.

        The hot path of a batch: the topic partition is the input partition
        (tables are co-partitioned with `transactions`).
        """
        producers: dict[int, Any] = {}
        for partition, key, value in writes:
            entry = producers.get(partition)
            if entry is None:
                tx = self._of(partition)
                entry = producers[partition] = (tx.producer.produce, tx.delivered, tx.producer)
            produce, delivered, producer = entry
            try:
                produce(topic, value, key, partition, on_delivery=delivered)
            except BufferError:
                with _failures(partition):
                    _produce_when_room(
                        producer, delivered, topic, key, value, {"partition": partition}
                    )
            except (KafkaException, SystemError) as exc:
                raise _translated(partition, exc) from None
        self.sent[topic] = self.sent.get(topic, 0) + len(writes)

    def send_each(self, records: list[Outgoing]) -> None:
        """Records of a batch's rejections and dead letters, each in its source's transaction.

        `Outgoing.partition`: the topic partition, or -1 for the client's default (by key).
        """
        producers: dict[int, Any] = {}
        for source, topic, key, value, partition, headers in records:
            entry = producers.get(source)
            if entry is None:
                tx = self._of(source)
                entry = producers[source] = (tx.producer.produce, tx.delivered, tx.producer)
            produce, delivered, producer = entry
            try:
                produce(topic, value, key, partition, on_delivery=delivered, headers=headers)
            except BufferError:
                kwargs = {"partition": partition, "headers": headers}
                with _failures(source):
                    _produce_when_room(producer, delivered, topic, key, value, kwargs)
            except (KafkaException, SystemError) as exc:
                raise _translated(source, exc) from None
            self.sent[topic] = self.sent.get(topic, 0) + 1

    async def commit(self, positions: dict[int, tuple[str, bytes, bytes]]) -> None:
        """Write each partition's position record last and commit its transaction.

        `positions`: partition -> (topic, key, value) of its position record.
        Raises Fenced if another worker owns a partition now, WriteFailed if
        any transaction could not be committed; the worker must then stop
        without writing more (processor.agent).
        """
        results = await asyncio.gather(
            *(self._run(self._finish, p, record) for p, record in positions.items()),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        fenced = [e for e in errors if isinstance(e, Fenced)]
        if fenced:
            raise fenced[0]
        if errors:
            raise errors[0]

    def _finish(self, partition: int, position: tuple[str, bytes, bytes]) -> None:
        tx = self._of(partition)
        producer = tx.producer
        try:
            remaining = producer.flush(self._timeout)
            if remaining or tx.failed:
                raise WriteFailed(
                    f"partition {partition}: {remaining} records unacknowledged, "
                    f"failures: {tx.failed[:3]}"
                )
            topic, key, value = position
            producer.produce(topic, value, key, partition, on_delivery=tx.delivered)
            producer.commit_transaction(self._timeout)
        except (KafkaException, SystemError) as exc:
            raise _translated(partition, exc) from None
        if tx.failed:
            raise WriteFailed(f"partition {partition}: failures: {tx.failed[:3]}")
        tx.open = False

    def close(self) -> None:
        for p in list(self._producers):
            gone = self._producers.pop(p)
            _close(gone.producer, self._timeout)
        self._threads.shutdown(wait=False)


@contextlib.contextmanager
def _failures(partition: int) -> Iterator[None]:
    """The client's errors as WriteFailed, or Fenced when another worker took the partition."""
    try:
        yield
    except (KafkaException, SystemError) as exc:
        raise _translated(partition, exc) from None


def _translated(partition: int, exc: BaseException) -> WriteFailed:
    # A fenced producer is in a fatal state: its next call raises. The
    # Python client was seen to raise SystemError ("... returned a result
    # with an exception set") from a produce() in that state, not a
    # KafkaException: both mean "this producer is done".
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError) and _is_fencing(error):
        return Fenced(f"partition {partition}: {error.str()}")
    text = str(exc).lower()
    # A producer fenced in the middle of a batch fails its next call with a
    # fatal error whose text names the cause: "fenced by a newer instance",
    # or "an operation with an old epoch" (seen in the zombie test).
    if "fenced" in text or "old epoch" in text:
        return Fenced(f"partition {partition}: {exc}")
    return WriteFailed(f"partition {partition}: {exc}")


def _is_fencing(error: KafkaError) -> bool:
    return error.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ) or (error.fatal() and "fence" in error.str().lower())


def _produce_when_room(
    producer: Any, delivered: Any, topic: str, key: bytes | None, value: bytes | None, kwargs: Any
) -> None:
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=delivered, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)  # the queue is full: let deliveries drain


def _close(producer: Any, timeout: float) -> None:
    try:
        producer.flush(timeout)
    except Exception:  # a closing producer's errors change nothing
        log.debug("closing a producer", exc_info=True)
