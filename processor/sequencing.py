"""Admit each partition's records once, in offset order, with no hole.

The replay rule (processor.batch) is exact only if a partition's events reach
the core in offset order, each once, from the committed offset on. Faust does
not promise that to an agent: faust-streaming 0.15 was seen to deliver the
last record of a batch again at the start of the next one, and, after
rebalances, to skip a record (offsets 282 -> 284 in the chaos test, one
account wrong). So the worker checks the sequence itself, per partition:

- a record below the next expected offset was applied already: dropped;
- a record at the next expected offset is admitted;
- a record above it means one is missing. Nothing after the hole is admitted;
  the worker asks the broker what is really at the expected offset: if a
  record is there, it seeks back to it (everything after is delivered again);
  if the broker's next record is further on (offsets can legitimately skip,
  e.g. transaction markers), the sequence moves on to it.

A new process knows no expected offsets; it starts from whatever the
consumer delivers first, which is the committed offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from processor.batch import Record


@dataclass
class Admitted:
    records: list[Record] = field(default_factory=list)
    duplicates: int = 0
    #: Records after a hole, dropped until the hole is resolved.
    held_back: int = 0
    #: partition -> the missing offset, for holes found in this call.
    holes: dict[int, int] = field(default_factory=dict)
    #: Partitions with records held back in this call (new or known holes).
    held_back_from: set[int] = field(default_factory=set)


class Sequencer:
    def __init__(self) -> None:
        self.expected: dict[int, int] = {}
        #: partition -> missing offset we are waiting for.
        self.waiting: dict[int, int] = {}

    def admit(self, records: Sequence[Record]) -> Admitted:
        out = Admitted()
        expected = self.expected
        for record in records:
            partition, offset = record.partition, record.offset
            want = expected.get(partition)
            if want is None or offset == want:
                out.records.append(record)
                expected[partition] = offset + 1
                self.waiting.pop(partition, None)
            elif offset < want:
                out.duplicates += 1
            else:
                out.held_back += 1
                out.held_back_from.add(partition)
                if partition not in self.waiting:
                    self.waiting[partition] = want
                    out.holes[partition] = want
        return out

    def skip_to(self, partition: int, offset: int) -> None:
        """The broker has no record between the expected offset and `offset`."""
        self.expected[partition] = offset
        self.waiting.pop(partition, None)

    def forget(self, partitions: set[int]) -> None:
        """Partitions handed to another worker: their next owner decides where they resume."""
        for partition in partitions:
            self.expected.pop(partition, None)
            self.waiting.pop(partition, None)
