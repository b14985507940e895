"""Changelog recovery that reads to the true end of each changelog partition.

Faust decides that a table is recovered when it has read up to the changelog's
high watermark as reported by ListOffsets(latest). Tansu 0.6 under-reports
that figure (it answers with the base offset of the last record batch + 1; see
kafkaio.admin.end_offsets), so a restarted worker stopped reading before the
last batch of changelog records and resumed with stale balances: measured on
the restart test, 20k rows, a wrong snapshot. Here the highwaters come from
the end the broker actually serves (partition EOF). On Kafka, where both
figures agree, this costs one short read per changelog topic at recovery.

It also retries a recovery step that times out. Faust waits for each step
(flush, highwaters, offsets, seeks) with the broker request timeout, and
mode's `wait_first` reports a timeout the same way as a stopped service, so
Faust's recovery loop ends for good: the worker keeps its partitions, never
starts its fetcher and never becomes ready. Seen in the chaos test (3
workers, 2 cores, 5 s request timeout): two partitions idle for 5 minutes,
the recovery task gone without a log line. Here a timeout starts the
recovery again instead, as a new rebalance would.

A step that fails because the broker cannot be reached (our own read of the
changelog ends, below, raises instead of retrying forever) starts the
recovery again too, after a pause: seen in the broker kill -9 test on Apache
Kafka, both workers crashed with exit 1 when a rebalance's recovery asked
for the ends while the broker was down.

The TableManager subclass exists only to hand Faust this Recovery; it is
selected with the app's `TableManager` setting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from faust.tables import TableManager
from faust.tables.recovery import RebalanceAgain, Recovery, ServiceStopped
from faust.types import TP
from mode.services import WaitArgT
from mode.utils.times import Seconds

from kafkaio.admin import last_record_offsets
from kafkaio.errors import KafkaIOError

#: Seconds between two tries of a recovery whose broker could not be reached.
UNREACHABLE_PAUSE = 1.0


class TrueEndRecovery(Recovery):
    #: Test hook (LEDGER_FAULT_SLOW_RECOVERY, set by processor.faust_app): the
    #: first highwater read of the process takes this many seconds longer, to
    #: make a recovery step time out on purpose. 0 in production.
    slow_first_highwaters: float = 0.0
    #: Called with the partition numbers of the active changelog partitions
    #: before their ends are read: the agent fences the partitions'
    #: previous owners there (processor.writer), so nothing of theirs can
    #: land after this read.
    #: kafkaio.settings `isolation_level` (set by processor.faust_app).
    isolation_level: ClassVar[str] = "read_committed"
    before_reading: ClassVar[Callable[[set[int]], Awaitable[None]] | None] = None

    async def _wait(self, coro: WaitArgT, timeout: Seconds | None = None) -> None:
        try:
            await super()._wait(coro, timeout=timeout)
        except ServiceStopped:
            if self.should_stop:
                raise
            # Not stopped: the step timed out (see the module docstring).
            self.log.warning("a table recovery step timed out after %ss; recovering again", timeout)
            self.signal_recovery_start.set()  # same generation: start over
            raise RebalanceAgain() from None
        except KafkaIOError as exc:
            # The broker is unreachable (see the module docstring).
            self.log.warning("a table recovery step failed (%s); recovering again", exc)
            await asyncio.sleep(UNREACHABLE_PAUSE)
            self.signal_recovery_start.set()
            raise RebalanceAgain() from None

    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)
        by_topic: dict[str, set[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        fence = TrueEndRecovery.before_reading
        if title == "active" and fence is not None and tps:
            await fence({tp.partition for tp in tps})
        if self.slow_first_highwaters:
            delay, TrueEndRecovery.slow_first_highwaters = self.slow_first_highwaters, 0.0
            await asyncio.sleep(delay)
        highwaters: dict[TP, int] = {}
        for topic, partitions in by_topic.items():
            count = max(partitions) + 1
            last = await asyncio.to_thread(
                last_record_offsets, bootstrap, topic, count, self.isolation_level
            )
            for partition in partitions:
                # Faust's convention: the highwater is the offset of the last
                # record, -1 for an empty partition. Not end - 1: the reader
                # is read_committed, and the last offset of a transactional
                # changelog is a commit marker, which no reader is handed, so
                # Faust would wait for it forever.
                highwaters[TP(topic, partition)] = last[partition]
        self.log.info(
            "Highwater for %s changelog partitions (read to end):\n%s",
            title,
            self._highwater_logtable(highwaters, title=title),
        )
        destination.clear()
        destination.update(highwaters)

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        if title == "active":
            # Read every assigned changelog partition from its start, at every
            # recovery. Faust otherwise resumes from an offset remembered from
            # an earlier recovery in this process, while the memory store may
            # have dropped that partition's keys in between (it drops keys of
            # partitions it stopped owning); measured in the chaos test: whole
            # partitions recovered without their history. A full read costs
            # one pass over the (compacted, on Kafka) changelog per rebalance.
            for tp in tps:
                destination[tp] = None  # type: ignore[assignment]
        await super()._build_offsets(consumer, tps, destination, title)


class TrueEndTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = TrueEndRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
