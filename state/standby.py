"""Warm copies of partitions another worker owns, kept up to date from their changelogs.

A standby store is the same `PartitionStore` a worker uses for a partition it
owns, fed by one background thread that tails the partitions' changelogs
(read_committed: committed records only, so a standby store is never ahead
of its changelog), each consumed chunk written with the offset reading goes
on from, as the restore writes it (state.restore). When the worker is
handed one of these partitions, `release` gives it the store, already at
or near the changelog's end: its restore reads only the last few records.

Which partitions to keep is the caller's decision (processor.agent:
`LEDGER_STANDBY_REPLICAS`); this module only follows `follow`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kafkaio.admin import _eof_consumer
from state.store import InUse, PartitionStore, Shared, open_store

log = logging.getLogger("ledger.worker")

#: Records per consume call (and at most per RocksDB write).
CHUNK = 10_000
#: Seconds a consume call waits when nothing is there.
WAIT = 0.2


class Standby:
    def __init__(
        self,
        bootstrap: str,
        isolation: str,
        topics: dict[str, str],
        directory: Callable[[int], Path],
        shared: Shared,
    ) -> None:
        self._bootstrap = bootstrap
        self._isolation = isolation
        self._topics = topics
        self._table_of = {topic: table for table, topic in topics.items()}
        self._directory = directory
        self._shared = shared
        #: Held while the thread changes stores or its assignment: `release`
        #: waits for it, so a store is never written by two sides.
        self._lock = threading.Lock()
        self._wanted: set[int] = set()
        self.stores: dict[int, PartitionStore] = {}
        #: partition -> changelog records applied since start.
        self.applied: dict[int, int] = {}
        #: partition -> changelog records not read yet (both changelogs), as of
        #: the last fetch; written by the thread, read by /metrics and the API.
        self.lag: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-standby", daemon=True)
        self._thread.start()

    def follow(self, partitions: set[int]) -> None:
        """Keep these partitions warm from now on (and no others)."""
        with self._lock:
            self._wanted = set(partitions)

    def release(self, partitions: set[int]) -> dict[int, PartitionStore]:
        """Stop following these partitions; hand over the stores held for them."""
        with self._lock:
            self._wanted -= partitions
            return {p: self.stores.pop(p) for p in partitions if p in self.stores}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for store in self.stores.values():
                store.close()
            self.stores.clear()

    def _run(self) -> None:
        consumer = _eof_consumer(self._bootstrap, self._isolation, {"enable.partition.eof": False})
        assigned: set[int] = set()
        try:
            while not self._stop.is_set():
                assigned = self._reconcile(consumer, assigned)
                if not assigned:
                    self._stop.wait(WAIT)
                    continue
                messages = consumer.consume(CHUNK, timeout=WAIT)
                if messages:
                    self._apply(messages)
                self._measure_lag(consumer, assigned)
        except Exception:  # a standby is an optimisation: log, and the worker goes on without it
            log.exception("standby replication stopped")
        finally:
            consumer.close()

    def _reconcile(self, consumer: Any, assigned: set[int]) -> set[int]:
        """Open and close stores, and assign their changelogs, as `follow` last said."""
        with self._lock:
            wanted = set(self._wanted)
            for p in set(self.stores) - wanted:
                self.stores.pop(p).close()
            for p in wanted - set(self.stores):
                try:
                    store, why = open_store(self._directory(p), p, self._shared)
                except InUse:
                    continue  # still open as an active store here: next time
                if why:
                    log.warning("standby %d: local state unreadable (%s); read again", p, why)
                self.stores[p] = store
            wanted &= set(self.stores)
            if wanted != assigned:
                consumer.assign(
                    [
                        TopicPartition(
                            topic, p, self.stores[p].changelog_from(table) or OFFSET_BEGINNING
                        )
                        for p in sorted(wanted)
                        for table, topic in self._topics.items()
                    ]
                )
                if wanted - assigned:
                    log.info("standby for partitions %s", sorted(wanted))
        return wanted

    def _measure_lag(self, consumer: Any, assigned: set[int]) -> None:
        """Records each standby copy lacks: the ends seen in the last fetches, minus the position.

        The consumer's position, not the store's `from:` offset: the
        position moves past the transaction markers at a changelog's end,
        which the store never sees as records.
        """
        lag: dict[int, int] = {}
        for p in assigned:
            tps = [TopicPartition(topic, p) for topic in self._topics.values()]
            behind = 0
            for tp in consumer.position(tps):
                # cached: the high watermark of the last fetch response, no request.
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0 or tp.offset < 0:  # nothing fetched yet: unknown, not zero
                    break
                behind += max(0, high - tp.offset)
            else:
                lag[p] = behind
        self.lag = lag

    def read(self, partition: int, read: Callable[[PartitionStore], Any]) -> tuple[bool, Any]:
        """`read(store)` on the standby copy of `partition`, if one is kept here: (kept, answer).

        Under the lock: the thread neither writes nor closes the store meanwhile.
        """
        with self._lock:
            store = self.stores.get(partition)
            if store is None or partition not in self._wanted:
                return False, None
            return True, read(store)

    def _apply(self, messages: list[Any]) -> None:
        chunks: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        nexts: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.info("standby: %s", error)
                continue
            key = (str(message.topic()), int(message.partition() or 0))
            value = message.value()
            chunks.setdefault(key, []).append((message.key() or b"", value))
            nexts[key] = int(message.offset() or 0) + 1
        with self._lock:
            for (topic, p), records in chunks.items():
                store = self.stores.get(p)
                if store is None or p not in self._wanted:
                    continue  # released meanwhile: its new owner's restore reads these
                table = self._table_of[topic]
                if nexts[(topic, p)] <= store.changelog_from(table):
                    continue  # read before a reassignment moved the store on
                store.apply_changelog(table, records, nexts[(topic, p)])
                self.applied[p] = self.applied.get(p, 0) + len(records)
