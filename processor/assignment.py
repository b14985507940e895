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
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class UrlSharingRoundRobin(RoundRobinPartitionAssignor):  # type: ignore[misc]
    def __init__(self) -> None:
        #: This worker's web server as the others reach it (processor.faust_app sets it).
        self.url = ""
        self._lock = threading.Lock()
        #: (topic, partition) -> URL of its owner, from the last assignment received.
        self._owners: dict[tuple[str, int], str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.url.encode())

    def assign(
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
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
