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
  if the broker's next record is further on (offsets can legitimately skip:
  every transaction of a transactional producer, produce-csv's included,
  ends with a commit marker that takes an offset and is never delivered),
  the sequence moves on to it. The records after a new hole are kept
  (`Admitted.held`) so that, when the broker says the hole is only such a
  skip, they are admitted at once instead of fetched again after a seek:
  produce-csv commits every second, so this is the common case.

A hole made only of markers the consumer itself read (processor.control_batches)
is passed as the records are admitted (`Sequencer`'s `markers_only`), in the same
pass: handled afterwards, one hole at a time, each pass admitted the rest of
the batch again, and a 50,000-record batch spans several of produce-csv's
once-a-second markers per partition (0.5-2.0 s per million events on a
2-core VM, measured).

A new process knows no expected offsets; it starts from whatever the
consumer delivers first, which is the committed offset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from processor.batch import Consumed


@dataclass
class Admitted:
    records: list[Consumed] = field(default_factory=list)
    duplicates: int = 0
    #: Records after a hole, dropped until the hole is resolved.
    held_back: int = 0
    #: partition -> the missing offset, for holes found in this call.
    holes: dict[int, int] = field(default_factory=dict)
    #: Partitions with records held back in this call (new or known holes).
    held_back_from: set[int] = field(default_factory=set)
    #: partition -> the records after a hole found in this call, in order.
    held: dict[int, list[Consumed]] = field(default_factory=dict)
    #: partition -> the offset right after the last gap of markers passed.
    passed: dict[int, int] = field(default_factory=dict)
    #: Gaps of markers passed (`Sequencer` `markers_only`).
    markers_passed: int = 0


class Sequencer:
    def __init__(self, markers_only: Callable[[int, int, int], bool] | None = None) -> None:
        self.expected: dict[int, int] = {}
        #: partition -> missing offset we are waiting for.
        self.waiting: dict[int, int] = {}
        #: markers_only(partition, first, after): whether offsets [first,
        #: after) held only transaction markers (such a gap is no hole).
        self._markers_only = markers_only

    def admit(self, records: Sequence[Consumed]) -> Admitted:
        """Sort `records` into admitted, duplicates and held back (see the module)."""
        out = Admitted()
        expected = self.expected
        waiting = self.waiting
        markers_only = self._markers_only
        for record in records:
            partition, offset = record.partition, record.offset
            want = expected.get(partition)
            if want is None or offset == want:
                out.records.append(record)
                expected[partition] = offset + 1
                waiting.pop(partition, None)
            elif offset < want:
                out.duplicates += 1
            elif (
                markers_only is not None
                and partition not in waiting
                and markers_only(partition, want, offset)
            ):
                out.records.append(record)
                expected[partition] = offset + 1
                out.passed[partition] = offset
                out.markers_passed += 1
            else:
                out.held_back += 1
                out.held_back_from.add(partition)
                if partition not in waiting:
                    waiting[partition] = want
                    out.holes[partition] = want
                    out.held[partition] = [record]
                elif partition in out.holes:
                    out.held[partition].append(record)
        return out

    def readmit(self, admitted: Admitted, partitions: set[int]) -> None:
        """The holes of `partitions` were only skips (`skip_to` done): admit what they held.

        Records go on after `admitted.records`, in order per partition; a
        further hole among them is a new hole of `admitted`.
        """
        held = [r for p in partitions for r in admitted.held.pop(p, [])]
        for p in partitions:
            admitted.holes.pop(p, None)
        admitted.held_back_from -= partitions
        admitted.held_back -= len(held)
        again = self.admit(held)
        admitted.records.extend(again.records)
        admitted.duplicates += again.duplicates
        admitted.held_back += again.held_back
        admitted.held_back_from |= again.held_back_from
        admitted.holes.update(again.holes)
        admitted.held.update(again.held)
        admitted.passed.update(again.passed)
        admitted.markers_passed += again.markers_passed

    def skip_to(self, partition: int, offset: int) -> None:
        """The broker has no record between the expected offset and `offset`."""
        self.expected[partition] = offset
        self.waiting.pop(partition, None)

    def forget(self, partitions: set[int]) -> None:
        """Partitions handed to another worker: their next owner decides where they resume."""
        for partition in partitions:
            self.expected.pop(partition, None)
            self.waiting.pop(partition, None)
