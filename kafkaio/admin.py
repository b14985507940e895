"""Topics, offsets and reading a topic to its end, with confluent-kafka."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kafkaio.errors import (
    AccessRefused,
    BrokerUnavailable,
    DeliveryFailed,
    KafkaIOError,
    TopicMissing,
)
from kafkaio.security import client_config

P = ParamSpec("P")
R = TypeVar("R")


#: Errors a broker answers while it is still taking up a role (a group or
#: transaction coordinator loading its partition after a start or a restart):
#: measured on Apache Kafka, `committed_offsets` right after the broker came
#: up answered NOT_COORDINATOR. Asking again shortly after succeeds. Also the
#: client's own "no broker reachable" errors, for a broker restarting.
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TRANSPORT,
    }
)
#: Seconds a call keeps retrying such answers before it reports them.
RETRY_SECONDS = 30.0


READ_COMMITTED = "read_committed"


def _retriable(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return False
    return error.code() in _COORDINATOR_MOVING or bool(error.retriable())


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Retry transient broker answers; raise the rest as this package's errors (one line)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return fn(*args, **kwargs)
            except KafkaException as exc:
                if _retriable(exc) and time.monotonic() < deadline:
                    time.sleep(0.25)
                    continue
                what = fn.__name__.replace("_", " ")
                raise BrokerUnavailable(f"{what}: {exc.args[0]}") from exc

    return wrapper


def admin_client(
    bootstrap: str, quiet: bool = False, errors: list[KafkaError] | None = None
) -> AdminClient:
    """An AdminClient; `errors`, if given, collects the client's own error events."""
    config: dict[str, Any] = client_config(bootstrap)
    if quiet:
        # librdkafka logs every refused connection (~20 lines/s) on stderr;
        # a probe reports the outcome itself.
        config["log_level"] = 0
    if errors is not None:
        config["error_cb"] = errors.append
    return AdminClient(config)


#: librdkafka's codes for "the broker answered and refused us" (SASL, TLS).
_REFUSALS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
    }
)


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request.

    Raises BrokerUnavailable when none answers in time, and AccessRefused at
    once when one answers with a refusal (wrong password, unknown mechanism,
    a certificate it does not accept): no amount of waiting fixes those.
    """
    errors: list[KafkaError] = []
    admin = admin_client(bootstrap, quiet=True, errors=errors)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(2.0, timeout))
            return
        except KafkaException as exc:
            admin.poll(0)  # error events reach error_cb only from a poll
            refused = [e for e in errors if e.code() in _REFUSALS]
            if refused:
                raise AccessRefused(
                    f"the broker at {bootstrap} refused the connection: {refused[-1].str()} "
                    "(check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*)"
                ) from None
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no broker answered at {bootstrap}: {exc}") from exc
            time.sleep(0.2)


@translated
def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    config: dict[str, str] | None = None,
) -> int:
    """Create `topic` if missing; return its partition count (which may differ if it existed)."""
    admin = admin_client(bootstrap)
    # List every topic: asking for one topic's metadata makes some brokers
    # (Tansu among them) auto-create it with their default partition count.
    existing = admin.list_topics(timeout=10).topics.get(topic)
    if existing is not None and existing.error is None and existing.partitions:
        return len(existing.partitions)
    futures = admin.create_topics([NewTopic(topic, partitions, replication, config=config or {})])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            if _retriable(exc):
                # The broker went away mid-request: `translated` asks again
                # (seen in the broker kill -9 test: produce-csv exited 2 when
                # the broker died while it created the input topic).
                raise
            raise KafkaIOError(f"cannot create topic {topic!r}: {exc}") from exc
    return partition_count(bootstrap, topic)


@translated
def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """Partitions of `topic`, waiting briefly for metadata to show a just-created topic."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise TopicMissing(f"topic {topic!r} does not exist")
        time.sleep(0.1)


@translated
def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1 where nothing is committed yet)."""
    consumer = Consumer({**client_config(bootstrap), "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


@translated
def end_offsets(
    bootstrap: str,
    topic: str,
    partitions: int,
    isolation: str = READ_COMMITTED,
    by_reading: bool = False,
) -> dict[int, int]:
    """The end of each partition: the offset the next record will get.

    For a read_committed reader on Apache Kafka, ListOffsets(latest) answers
    the last stable offset, which is that end, and needs only Describe on
    the topic (deploy/README.md, the exporter's ACLs). `by_reading`
    (settings `end_offsets`, "read") is for a broker whose answer is only a
    starting point: Tansu 0.6 answers the base offset of the last record
    batch + 1 (measured: batches of 10, 5 and 3 records gave 1, 11, 16
    instead of 18). The high watermark in a fetch response is right, so
    then we read from one before the reported end to the partition-EOF
    event, whose offset is the end.
    """
    consumer = _eof_consumer(bootstrap, isolation)
    try:
        reported = {}
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            reported[p] = int(high)
        if not by_reading:
            return reported
        consumer.assign([TopicPartition(topic, p, max(o - 1, 0)) for p, o in reported.items()])
        ends: dict[int, int] = {}
        stall = _Stall(topic)
        while len(ends) < partitions:
            messages = consumer.consume(10_000, timeout=BATCH_WAIT)
            stall.check(messages, set(range(partitions)) - set(ends))
            for message in messages:
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    ends[int(message.partition() or 0)] = int(message.offset() or 0)
                elif error is not None:
                    raise KafkaIOError(f"reading {topic}: {error}")
        return ends
    finally:
        consumer.close()


@translated
def latest_value(
    bootstrap: str, topic: str, partition: int, key: bytes, isolation: str = READ_COMMITTED
) -> bytes | None:
    """The value of the last committed record of `partition` with `key`, or None if none.

    Read backwards in widening windows from the end, so a key written near
    the end (a worker's position record closes each of its transactions)
    costs one small read.
    """
    consumer = _eof_consumer(bootstrap, isolation)
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
        upper, window = int(high), 64
        while upper > low:
            start = max(upper - window, int(low))
            consumer.assign([TopicPartition(topic, partition, start)])
            found: bytes | None = None
            stall = _Stall(topic)
            reading = True
            while reading:
                messages = consumer.consume(10_000, timeout=BATCH_WAIT)
                stall.check(messages, {partition})
                for message in messages:
                    error = message.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        reading = False
                    elif error is not None:
                        raise KafkaIOError(f"reading {topic}: {error}")
                    elif int(message.offset() or 0) >= upper:
                        reading = False
                    elif message.key() == key:
                        found = message.value()
            consumer.unassign()
            if found is not None:
                return found
            upper, window = start, window * 16
        return None
    finally:
        consumer.close()


@translated
def start_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The first offset still in each partition (the log start, 0 until retention)."""
    consumer = _eof_consumer(bootstrap)
    try:
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0])
            for p in range(partitions)
        }
    finally:
        consumer.close()


class OffsetProbe:
    """Where the next record of a partition is, on one consumer kept open (it asks often).

    A worker asks at every transaction marker of its input (produce-csv
    commits every second): a new consumer each time would cost a connection
    and a metadata round trip; an assign on this one costs one fetch. Not
    thread-safe: one caller at a time (the worker asks under its batch lock).
    """

    def __init__(self, bootstrap: str, isolation: str = READ_COMMITTED) -> None:
        self.bootstrap = bootstrap
        self.isolation = isolation
        self._consumer: Consumer | None = None

    def first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        """The offset of the first record at or after `offset`, or None at the end."""
        found, is_record = self.next_record_or_end(topic, partition, offset)
        return found if is_record else None

    def first_offsets_from(self, topic: str, offsets: dict[int, int]) -> dict[int, int | None]:
        """`first_offset_from` for several partitions at once: one round trip, not one each."""
        answers = self.next_records_or_ends(topic, offsets)
        return {p: found if is_record else None for p, (found, is_record) in answers.items()}

    def next_record_or_end(self, topic: str, partition: int, offset: int) -> tuple[int, bool]:
        """(offset, True) of the first record at or after `offset`, or (end, False).

        The end is where this reader stops: under read_committed, the last
        stable offset (nothing of an open transaction is passed over).
        """
        return self.next_records_or_ends(topic, {partition: offset})[partition]

    @translated
    def next_records_or_ends(
        self, topic: str, offsets: dict[int, int]
    ) -> dict[int, tuple[int, bool]]:
        """`next_record_or_end` for each partition of `offsets`, asked together.

        A worker asks at each transaction marker of its input, and a batch
        often holds one on most of its partitions: asked one by one, each
        question cost a fetch round trip (about 13 ms, measured).
        """
        if self._consumer is None:
            # An answer at the end must not wait for records that may come:
            # the broker holds an empty fetch up to fetch.wait.max.ms.
            # One offset is all it wants: small fetches. And no pause before
            # the fetch at the new offset: librdkafka postpones a partition's
            # next fetch by fetch.queue.backoff.ms (1 s) when its queue still
            # holds records, here those of the last question (measured: one
            # probe in nine took 1 s).
            quick = {
                "fetch.wait.max.ms": 10,
                "max.partition.fetch.bytes": 1024,
                "fetch.queue.backoff.ms": 0,
                "fetch.error.backoff.ms": 10,
            }
            self._consumer = _eof_consumer(self.bootstrap, self.isolation, quick)
        consumer = self._consumer
        # assign() replaces the last assignment, and librdkafka drops what it
        # had fetched for it: only records of these partitions come back.
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        answers: dict[int, tuple[int, bool]] = {}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for message in consumer.consume(len(offsets), timeout=1.0):
                    partition = int(message.partition() or 0)
                    if partition not in offsets or partition in answers:
                        continue
                    error = message.error()
                    found = int(message.offset() or 0)
                    if error is None:
                        if found >= offsets[partition]:
                            answers[partition] = (found, True)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        answers[partition] = (max(found, offsets[partition]), False)
                    else:
                        raise KafkaIOError(f"reading {topic}[{partition}]: {error}")
                if len(answers) == len(offsets):
                    return answers
            missing = sorted(set(offsets) - set(answers))
            raise KafkaIOError(f"reading {topic}{missing}: no answer in 30s")
        finally:
            # An assigned partition is prefetched in the background until
            # unassigned: with the small fetches above, the rest of the
            # partition 1 KB at a time, for nothing. Measured on a catch-up
            # of 1M events (bench.profile_worker): the client's broker thread
            # used 8-10 s of CPU, one core, beside the worker's 7; the
            # broker's CPU doubled with it; two workers then did not scale.
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


#: How long one consume() call waits to fill its batch. librdkafka returns a
#: batch only when it is full or this time is up, even when every partition
#: has already reported its end: with 1 s, reading a topic of a few records
#: took 2 s (measured: the ingestion journal, the exporter on small topics).
BATCH_WAIT = 0.05


class EndOffsets:
    """Ends of several topics' partitions, asked often through one consumer (worker checkpoints).

    Under read_committed the broker answers the last stable offset; a broker
    that under-reports (Tansu) only makes the answer smaller, which is the
    safe side for every caller here (a restore then reads a little more).
    """

    def __init__(self, bootstrap: str, isolation: str = READ_COMMITTED) -> None:
        self._bootstrap = bootstrap
        self._isolation = isolation
        self._consumer: Consumer | None = None

    def ask(
        self, topics: dict[str, str], partitions: list[int], timeout: float = 5.0
    ) -> dict[str, dict[int, int]]:
        """{name: {partition: end}} for each `topics` name -> topic.

        One try, bounded by `timeout` in all: the worker asks between two
        batches, and a broker that does not answer at once is better left
        alone (the answer is only an optimisation). Raises BrokerUnavailable.
        """
        if self._consumer is None:
            self._consumer = _eof_consumer(self._bootstrap, self._isolation)
        deadline = time.monotonic() + timeout
        ends: dict[str, dict[int, int]] = {}
        try:
            for name, topic in topics.items():
                ends[name] = {}
                for p in partitions:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BrokerUnavailable(f"partition ends: no answer in {timeout:.0f}s")
                    _low, high = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=left, cached=False
                    )
                    ends[name][p] = int(high)
        except KafkaException as exc:
            raise BrokerUnavailable(f"partition ends: {exc.args[0]}") from exc
        return ends

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class _Stall:
    """Gives up on a read that stopped moving: no record and no end for STALL_SECONDS.

    Seen once in the broker-outage test: right after the broker came back, a
    table recovery's read of the changelogs' ends waited for good for the
    end-of-partition event of a partition (no error, no record). Raised as
    BrokerUnavailable, so callers that wait for the broker ask again, with a
    new consumer.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.since = time.monotonic()

    def check(self, messages: list[Any], waiting: set[int]) -> None:
        now = time.monotonic()
        if messages:
            self.since = now
        elif now - self.since > STALL_SECONDS:
            raise BrokerUnavailable(
                f"reading {self.topic}: nothing from partitions {sorted(waiting)} "
                f"in {STALL_SECONDS:.0f}s"
            )


#: See `_Stall`.
STALL_SECONDS = 30.0


def _eof_consumer(
    bootstrap: str, isolation: str = READ_COMMITTED, extra: dict[str, Any] | None = None
) -> Consumer:
    return Consumer(
        {
            # Every reader here stops at the end: an empty fetch there must
            # come back at once, not after the broker's 500 ms default wait
            # (half of the time it took to read a journal of one record).
            "fetch.wait.max.ms": 10,
            **(extra or {}),
            **client_config(bootstrap),
            "group.id": "ledger-export",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # librdkafka's default, said here because everything read with it
            # (exports, changelog ends, the sequence check) must skip the
            # records of aborted transactions (docs/exactness.md); only a
            # broker with a broken read_committed gets read_uncommitted
            # (kafkaio.settings, `isolation_level`).
            "isolation.level": isolation,
        }
    )


def read_to_end(
    bootstrap: str, topic: str, partitions: int, isolation: str = READ_COMMITTED
) -> Iterator[Any]:
    """Every record of `topic`, from the beginning to the end as of now.

    The end of a partition is taken from partition-EOF events, not from the
    high watermark alone: the embedded broker has been seen to report a high
    watermark below the last readable record.
    """
    consumer = _eof_consumer(bootstrap, isolation)
    try:
        # The leaders first: assigned before librdkafka knows them, a
        # partition waits for its offset-query retry timer (500 ms, measured).
        try:
            consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            # The broker is away (seen in the broker kill test: produce-csv,
            # reading its journal as the broker restarted, exited 1 here):
            # callers that wait for the broker ask again.
            raise BrokerUnavailable(f"reading {topic}: {exc.args[0]}") from exc
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        pending = set(range(partitions))
        stall = _Stall(topic)
        while pending:
            messages = consumer.consume(10_000, timeout=BATCH_WAIT)
            stall.check(messages, pending)
            for message in messages:
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise KafkaIOError(f"reading {topic}: {error}")
    finally:
        consumer.close()


# --- consumer groups and topic rebuilds (ledger-admin) ------------------------------------

#: Group states in which no consumer holds partitions. Tansu reports no member
#: list at all (an active group shows STABLE with members=[]), so the state,
#: not the member count, is what tells an idle group from an active one.
IDLE_GROUP_STATES = frozenset({"EMPTY", "DEAD"})


@dataclass(frozen=True)
class GroupState:
    state: str
    members: int

    @property
    def idle(self) -> bool:
        return self.state in IDLE_GROUP_STATES and self.members == 0


@translated
def group_state(bootstrap: str, group: str) -> GroupState:
    """The group's state (STABLE, EMPTY, DEAD, ...) and how many members the broker lists."""
    admin = admin_client(bootstrap)
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    return GroupState(described.state.name, len(described.members))


@translated
def group_members(bootstrap: str, group: str, topic: str) -> dict[str, set[int]]:
    """Each member of the group (by member id) and the partitions of `topic` it holds."""
    admin = admin_client(bootstrap)
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    members: dict[str, set[int]] = {}
    for member in described.members:
        held = member.assignment.topic_partitions if member.assignment else []
        members[member.member_id] = {tp.partition for tp in held if tp.topic == topic}
    return members


def join_refused(bootstrap: str, group: str, topic: str, timeout: float = 5.0) -> bool:
    """Try to join `group` with a protocol no worker uses; True if the broker refused.

    For brokers whose group description cannot be trusted: Tansu 0.6 lists
    no members, and keeps a group STABLE after its last member stopped until
    some group request makes it look again (measured: 40 s and more). A
    JoinGroup is such a request. While any member is alive the broker refuses
    it (INCONSISTENT_GROUP_PROTOCOL: the workers' assignor is Faust's, ours is
    roundrobin) or shares the partitions with the members; on an empty group
    the join gets every partition and we leave at once.
    """
    refused: list[KafkaError] = []
    joined: list[int] = []
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": group,
            "enable.auto.commit": False,
            "partition.assignment.strategy": "roundrobin",
            "error_cb": lambda error: refused.append(error),
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        count = len(meta.partitions) if meta is not None and meta.partitions else 0
        consumer.subscribe([topic], on_assign=lambda _c, held: joined.append(len(held)))
        deadline = time.monotonic() + timeout
        while not refused and not joined and time.monotonic() < deadline:
            consumer.poll(0.2)
    finally:
        consumer.close()
    # Joined with only some of the partitions: others hold the rest. (Tansu
    # was seen to accept the join while a worker was a member, once the
    # workers' rebalances became quick: the assignment is what tells.)
    return not joined or joined[-1] < count


#: Seconds `set_group_offsets` waits for a broker still counting a member that left.
MEMBER_GONE_SECONDS = 60.0


@translated
def set_group_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` (partition -> next offset to read) for `group`, which must be idle.

    AlterConsumerGroupOffsets: Kafka refuses it while the group has members,
    which guards the window between our idle check and this call; Tansu 0.6
    accepts it as well (measured).
    """
    admin = admin_client(bootstrap)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
    )
    deadline = time.monotonic() + MEMBER_GONE_SECONDS
    while True:
        result = admin.alter_consumer_group_offsets([request], request_timeout=30)[group].result()
        failed = [tp for tp in result.topic_partitions if tp.error is not None]
        if not failed:
            return
        # Tansu 0.6 answers UNKNOWN_MEMBER_ID for a while after the last member
        # (a stopped worker, our own join probe) left an idle group: ask again.
        lingering = all(tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID for tp in failed)
        if not lingering or time.monotonic() > deadline:
            raise KafkaIOError(f"could not reset offsets of group {group!r}: {failed}")
        time.sleep(1.0)


@translated
def recreate_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int,
    config: dict[str, str],
    timeout: float = 60.0,
) -> None:
    """Delete `topic` if it exists and create it again, empty, with this layout.

    Kafka deletes a topic asynchronously: a create right after the delete can
    fail with TOPIC_ALREADY_EXISTS (marked for deletion) for a while, so the
    create is retried until `timeout`. Tansu deletes at once.
    """
    admin = admin_client(bootstrap)
    if topic in admin.list_topics(timeout=10).topics:
        try:
            admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaIOError(f"cannot delete topic {topic!r}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        futures = admin.create_topics([NewTopic(topic, partitions, replication, config=config)])
        try:
            futures[topic].result(timeout=30)
            break
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaIOError(f"cannot create topic {topic!r}: {exc}") from exc
            if time.monotonic() > deadline:
                raise KafkaIOError(
                    f"topic {topic!r} is still being deleted after {timeout:.0f}s"
                ) from exc
            time.sleep(1.0)
    partition_count(bootstrap, topic)  # wait until metadata shows it


def copy_topic(bootstrap: str, source: str, target: str, producer: Any) -> int:
    """Republish every record of `source` to `target`, same key, value and headers.

    Each key's records keep their order: a key lives in one source partition,
    read in offset order, and the (idempotent) producer keeps per-partition
    order in `target`, whose partition the producer's partitioner picks anew.
    Returns the number of records copied.
    """
    copied = 0
    for message in read_to_end(bootstrap, source, partition_count(bootstrap, source)):
        producer.produce(
            target, key=message.key(), value=message.value(), headers=message.headers()
        )
        copied += 1
        if copied % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise DeliveryFailed(f"copying {source} to {target}: some records were not delivered")
    return copied
