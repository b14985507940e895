"""Partition assignment: aiokafka's round robin, telling every member where the others answer.

Faust hands an app without Faust tables (ours, since state.store) to
aiokafka's round-robin assignor, and this worker's exactness tests have run
with it since. Its member metadata and assignments carry no user data, so
a member cannot tell which worker's web server owns a partition, which the
balance API needs to forward a query (processor.api). This assignor
assigns exactly as round robin does (the same algorithm, the same protocol
name, so workers of the previous release and of this one can share a
group), and adds one thing: each member sends its URL in its metadata, and
the leader sends every member the map of URL -> partitions it assigned.

(Faust's own assignor also carries URLs, but switching to it changed how
partitions move at each rebalance, and with it the CI's SIGKILL chaos run
on the embedded broker stalled in rebalances; this keeps the assignment
the tests were run with.)

One more thing is added, for a broker restart. Right after Kafka starts, a
metadata answer may lack a topic whose partition leaders are not elected
yet, and the leader then assigns none of its partitions. aiokafka only
rebalances again when a later metadata answer shows the partitions, and it
asks for one every `metadata_max_age_ms` (5 minutes in Faust). Seen in CI
(the broker-outage chaos test on Apache Kafka): three workers in a stable
group, each with nothing assigned, for the whole 300 s the exporter waited.
So the leader asks for metadata again each second until every subscribed
topic has partitions; the coordinator's metadata listener then sees the
change and rebalances.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger("ledger.worker")

#: Seconds between two metadata requests while a subscribed topic has no partitions.
METADATA_PAUSE = 1.0


class UrlSharingRoundRobin(RoundRobinPartitionAssignor):  # type: ignore[misc]
    def __init__(self) -> None:
        #: This worker's web server as the others reach it (processor.faust_app sets it).
        self.url = ""
        self._lock = threading.Lock()
        #: (topic, partition) -> URL of its owner, from the last assignment received.
        self._owners: dict[tuple[str, int], str] = {}
        #: The consumer's aiokafka client (`bind`), asked for metadata again by the leader.
        self._client: Any = None
        self._refreshing: asyncio.Task[None] | None = None

    def bind(self, consumer: Any) -> None:
        """Assign `consumer`'s partitions (an AIOKafkaConsumer, before its start()).

        aiokafka reads the strategy at start(). Pinned: aiokafka 0.14.0
        (`_partition_assignment_strategy`, `_client` are private there).
        """
        self._client = consumer._client
        consumer._partition_assignment_strategy = [self]

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.url.encode())

    def assign(
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        subscribed = {topic for m in members.values() for topic in m.subscription}
        unknown = sorted(t for t in subscribed if not cluster.partitions_for_topic(t))
        if unknown:
            self._ask_until_known(unknown)
        plain = RoundRobinPartitionAssignor.assign(cluster, members)
        owners: dict[str, dict[str, list[int]]] = {}
        for member, assignment in plain.items():
            url = bytes(members[member].user_data or b"").decode(errors="replace")
            for topic, partitions in assignment.assignment:
                owners.setdefault(url, {}).setdefault(topic, []).extend(partitions)
        shared = json.dumps(owners, sort_keys=True).encode()
        return {
            member: ConsumerProtocolMemberAssignment(self.version, a.assignment, shared)
            for member, a in plain.items()
        }

    def _ask_until_known(self, topics: list[str]) -> None:
        """Have metadata asked for until `topics` have partitions (see the module docstring)."""
        log.warning(
            "no partition metadata for %s at this assignment (a broker starting?): "
            "none of its partitions assigned; rebalancing once the broker lists them",
            ", ".join(topics),
        )
        if self._client is None or (self._refreshing and not self._refreshing.done()):
            return
        # Called from the coordinator's coroutine, in the consumer's loop.
        self._refreshing = asyncio.get_running_loop().create_task(self._until_known(topics))

    async def _until_known(self, topics: list[str]) -> None:
        client = self._client
        while not all(client.cluster.partitions_for_topic(t) for t in topics):
            client.force_metadata_update()
            await asyncio.sleep(METADATA_PAUSE)

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        # Called in the consumer's thread; read by the web server's loop.
        try:
            owners = json.loads(assignment.user_data or b"{}")
        except ValueError:  # a leader of another release: no URLs this generation
            owners = {}
        found = {
            (topic, int(p)): url
            for url, topics in owners.items()
            if url
            for topic, partitions in topics.items()
            for p in partitions
        }
        with self._lock:
            self._owners = found

    def owner(self, topic: str, partition: int) -> str | None:
        """The URL of the worker the last assignment gave this partition to (None: unknown)."""
        with self._lock:
            return self._owners.get((topic, partition))


#: The process's one assignor (one consumer group member per worker process).
assignor = UrlSharingRoundRobin()
