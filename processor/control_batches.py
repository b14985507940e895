"""Note where the consumer passed over transaction markers: a hole they explain needs no question.

Tested with aiokafka 0.14.0 (pinned in pyproject); `install` refuses other versions.

Every transaction of a transactional producer (produce-csv's journal, any
exactly-once pipeline upstream) ends with a commit marker on each partition
it wrote: a control batch that takes an offset and is never delivered. The
worker's order check (processor.sequencing) sees the offset missing and,
until now, asked the broker what was there (processor.agent `_past_skips`)
before admitting the records after it: a round trip per marker, during a
batch, measured at 0.4-0.6 s of a 1M-event catch-up and one probe per
produce-csv commit (once a second) in steady flow.

But the consumer has just read that control batch: aiokafka's fetcher skips
it in `PartitionRecords._unpack_records` and says nothing. This patch wraps
the record batches a `PartitionRecords` iterates over and notes the offset
range of every control batch it passes (`ControlBatches.note`). A hole whose
every offset lies in such ranges held no record: the worker moves past it
at once. Any other hole (a record the consumer really skipped, an aborted
transaction's batch, compaction) still goes to the broker as before, so the
check stays exact: offsets of a partition never change meaning, and a
control batch holds control records only.
"""

from __future__ import annotations

import threading
from typing import Any

from aiokafka.consumer import fetcher

from processor.pins import require

TESTED_AIOKAFKA = ("0.14.0",)
#: Ranges kept per partition; older ones are dropped first (a hole they would
#: explain then costs one question to the broker, nothing more).
KEEP = 4096


class ControlBatches:
    """Offset ranges [first, next) of control batches the consumer has read, per partition.

    Written by aiokafka's fetcher in Faust's consumer thread, read by the
    agent on the event loop: guarded by a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges: dict[tuple[str, int], dict[int, int]] = {}

    def note(self, topic: str, partition: int, first: int, after: int) -> None:
        with self._lock:
            ranges = self._ranges.setdefault((topic, partition), {})
            ranges[first] = after
            if len(ranges) > KEEP:
                del ranges[min(ranges)]

    def covers(self, topic: str, partition: int, first: int, after: int) -> bool:
        """Whether every offset in [first, after) lies in a control batch read here."""
        with self._lock:
            ranges = self._ranges.get((topic, partition), {})
            offset = first
            while offset < after:
                end = ranges.get(offset)
                if end is None or end <= offset:
                    return False
                offset = end
            return True

    def reach(self, topic: str, partition: int, offset: int) -> int:
        """The first offset at or after `offset` that no control batch read here covers.

        A batch's last record is usually followed by its transaction's
        commit marker, read in the same fetch: the position written with
        the batch can go past it at once, instead of after an idle spell
        (processor.agent `past_trailing_markers`), so lag reaches 0 with the
        batch.
        """
        with self._lock:
            ranges = self._ranges.get((topic, partition), {})
            while (end := ranges.get(offset)) is not None and end > offset:
                offset = end
            return offset

    def forget_below(self, topic: str, partition: int, offset: int) -> None:
        """Ranges below `offset` can explain no future hole of this partition."""
        with self._lock:
            ranges = self._ranges.get((topic, partition))
            if ranges:
                for first in [f for f, after in ranges.items() if after <= offset]:
                    del ranges[first]


#: The process's one registry (one consumer per worker process).
seen = ControlBatches()


class _NotingBatches:
    """A MemoryRecords that tells `seen` of each control batch handed out."""

    def __init__(self, records: Any, topic: str, partition: int) -> None:
        self._records = records
        self._topic = topic
        self._partition = partition

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is not None and batch.is_control_batch:
            seen.note(self._topic, self._partition, batch.base_offset, batch.next_offset)
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)


class _NotingPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tp, _NotingBatches(records, tp.topic, tp.partition), *args, **kwargs)


def install() -> None:
    """Make aiokafka's fetcher note control batches (idempotent)."""
    require(
        "processor.control_batches",
        "aiokafka",
        TESTED_AIOKAFKA,
        "aiokafka.consumer.fetcher.PartitionRecords._unpack_records",
    )
    fetcher.PartitionRecords = _NotingPartitionRecords
