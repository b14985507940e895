"""Bring partition stores up to their changelogs' committed end, reading only what they lack.

Called for the partitions a worker has just taken over, after fencing their
earlier owners (processor.writer), so no transaction of another process can
commit on these changelog partitions meanwhile: what is read is final.

Per partition p, each changelog (accounts, deposits) is read from the
store's `from:` offset to its end, read_committed, in bulk: one consumer for
all partitions, librdkafka batches of up to 10,000 records, each batch one
RocksDB write together with the offset reading goes on from. Values are
stored as read: the changelog and the store share their encoding.

Trust (docs/exactness.md, "Local state"): a store is used only if it is the
changelog's prefix. The changelog's position is its last committed position
record (every batch ends with one), read from the end of the accounts
changelog. A store whose own position is past it holds writes no
transaction committed, or belongs to a changelog since recreated (`ledger-admin
rebuild`); a store whose `from:` offsets are past the changelog's end
belongs to a recreated or truncated changelog; a store that the tail does
not bring exactly to the changelog's position had wrong `from:` offsets.
Each is wiped and read again from offset 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kafkaio.admin import BATCH_WAIT, _eof_consumer, _Stall, end_offsets, latest_value, translated
from kafkaio.errors import KafkaIOError
from processor.state import decode_position, position_key
from state.store import ACCOUNTS, TABLES, PartitionStore

#: Records per RocksDB write while restoring.
CHUNK = 10_000


@dataclass
class Restored:
    #: partition -> changelog records read (both tables).
    records: dict[int, int] = field(default_factory=dict)
    #: partition -> why its store was wiped before reading.
    wiped: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


#: (partition, records read so far, records to read in all) while a restore runs.
Progress = Callable[[int, int, int], None]


def _at(position: bytes) -> int:
    return decode_position(position)


def _position_value(store: PartitionStore) -> bytes | None:
    return store.accounts.get(position_key(store.partition))


@translated
def restore(
    bootstrap: str,
    topics: dict[str, str],
    stores: dict[int, PartitionStore],
    partitions: int,
    isolation: str,
    ends_by_reading: bool = False,
    progress: Progress | None = None,
) -> Restored:
    """Read each store's changelog tails into it; wipe and read whole any store not to be trusted.

    `topics`: table name -> changelog topic; `partitions`: their partition count.
    """
    started = time.monotonic()
    done = Restored()
    if not stores:
        return done
    ends = {
        table: end_offsets(bootstrap, topic, partitions, isolation, by_reading=ends_by_reading)
        for table, topic in topics.items()
    }
    for p, store in stores.items():
        for table in TABLES:
            if store.changelog_from(table) > ends[table][p]:
                done.wiped[p] = (
                    f"the store has read {table} changelog up to {store.changelog_from(table)}, "
                    f"past its end {ends[table][p]} (recreated or truncated)"
                )
                store.wipe()
                break
    # The changelog's own position per partition: its last committed position
    # record, read from the end. Not from the tail alone: a changelog
    # recreated by `ledger-admin rebuild` may end below the store's `from:`
    # offsets and hold its position record before them.
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(
            zip(
                stores,
                pool.map(
                    lambda p: latest_value(
                        bootstrap, topics[ACCOUNTS], p, position_key(p), isolation
                    ),
                    stores,
                ),
                strict=True,
            )
        )
    for p, store in stores.items():
        mine, changelog = _position_value(store), found[p]
        if mine is not None and (changelog is None or _at(mine) > _at(changelog)):
            # Ahead of the changelog: writes no transaction committed, or a
            # store of a changelog since recreated.
            done.wiped[p] = (
                f"the store is at input position {_at(mine)}, the changelog at "
                f"{'none' if changelog is None else _at(changelog)}"
            )
            store.wipe()
    _read_tails(bootstrap, topics, stores, ends, isolation, done, progress)
    again = {}
    for p, store in stores.items():
        mine, changelog = _position_value(store), found[p]
        if mine != changelog:
            # The tail did not bring the store to the changelog's position: its
            # `from:` offsets were wrong for this changelog. Read it whole.
            done.wiped[p] = (
                f"after reading the tail the store is at input position "
                f"{'none' if mine is None else _at(mine)}, the changelog at "
                f"{'none' if changelog is None else _at(changelog)}"
            )
            store.wipe()
            again[p] = store
    if again:
        _read_tails(bootstrap, topics, again, ends, isolation, done, progress)
    done.seconds = time.monotonic() - started
    return done


def _read_tails(
    bootstrap: str,
    topics: dict[str, str],
    stores: dict[int, PartitionStore],
    ends: dict[str, dict[int, int]],
    isolation: str,
    done: Restored,
    progress: Progress | None,
) -> None:
    """Read every changelog partition of `stores` from the store's offset to the end."""
    wanted = []
    for p, store in stores.items():
        for table, topic in topics.items():
            start = store.changelog_from(table)
            if start < ends[table][p]:
                wanted.append(TopicPartition(topic, p, start or OFFSET_BEGINNING))
    if not wanted:
        return
    table_of = {topic: table for table, topic in topics.items()}
    total = {p: 0 for p in stores}
    for table in TABLES:
        for p, store in stores.items():
            total[p] += max(0, ends[table][p] - store.changelog_from(table))
    consumer = _eof_consumer(bootstrap, isolation, {"fetch.wait.max.ms": 10})
    try:
        consumer.list_topics(timeout=10)
        consumer.assign(wanted)
        pending = {(tp.topic, tp.partition) for tp in wanted}
        stall = _Stall(",".join(topics.values()))
        while pending:
            messages = consumer.consume(CHUNK, timeout=BATCH_WAIT)
            stall.check(messages, {p for _, p in pending})
            chunks: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
            nexts: dict[tuple[str, int], int] = {}
            for message in messages:
                error = message.error()
                topic, p = str(message.topic()), int(message.partition() or 0)
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((topic, p))
                        at = int(message.offset() or 0)
                        nexts[(topic, p)] = max(nexts.get((topic, p), 0), at)
                        continue
                    raise KafkaIOError(f"restoring from {topic}[{p}]: {error}")
                chunks.setdefault((topic, p), []).append((message.key() or b"", message.value()))
                nexts[(topic, p)] = int(message.offset() or 0) + 1
            for (topic, p), offset in nexts.items():
                records = chunks.get((topic, p), [])
                table = table_of[topic]
                store = stores[p]
                if offset <= store.changelog_from(table) and not records:
                    continue
                store.apply_changelog(table, records, max(offset, store.changelog_from(table)))
                done.records[p] = done.records.get(p, 0) + len(records)
                if progress is not None:
                    progress(p, done.records[p], total[p])
    finally:
        consumer.close()
