"""Changelog recovery that reads to the true end of each changelog partition.

Faust decides that a table is recovered when it has read up to the changelog's
high watermark as reported by ListOffsets(latest). Tansu 0.6 under-reports
that figure (it answers with the base offset of the last record batch + 1; see
kafkaio.admin.end_offsets), so a restarted worker stopped reading before the
last batch of changelog records and resumed with stale balances: measured on
the restart test, 20k rows, a wrong snapshot. Here the highwaters come from
the end the broker actually serves (partition EOF). On Kafka, where both
figures agree, this costs one short read per changelog topic at recovery.

The TableManager subclass exists only to hand Faust this Recovery; it is
selected with the app's `TableManager` setting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from kafkaio.admin import end_offsets


class TrueEndRecovery(Recovery):
    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)
        by_topic: dict[str, set[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        highwaters: dict[TP, int] = {}
        for topic, partitions in by_topic.items():
            count = max(partitions) + 1
            ends = await asyncio.to_thread(end_offsets, bootstrap, topic, count)
            for partition in partitions:
                # Faust's convention: the highwater is the offset of the last
                # record (end - 1), -1 for an empty partition.
                highwaters[TP(topic, partition)] = ends[partition] - 1
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
