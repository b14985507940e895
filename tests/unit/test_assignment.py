"""Partition assignment (processor.assignment): round robin's, plus every owner's URL."""

from __future__ import annotations

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from processor.assignment import UrlSharingRoundRobin


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(5))


def member(url: str) -> ConsumerProtocolMemberMetadata:
    return ConsumerProtocolMemberMetadata(0, ["tx"], url.encode())


def test_partitions_go_where_round_robin_puts_them_and_every_member_learns_every_owner() -> None:
    members = {"m-b": member("http://b:6066"), "m-a": member("http://a:6066")}
    leader = UrlSharingRoundRobin()
    assigned = leader.assign(Cluster(), members)
    plain = RoundRobinPartitionAssignor.assign(Cluster(), members)
    assert {m: a.assignment for m, a in assigned.items()} == {
        m: a.assignment for m, a in plain.items()
    }
    follower = UrlSharingRoundRobin()
    follower.on_assignment(assigned["m-b"])
    owners = {p: follower.owner("tx", p) for p in range(5)}
    assert owners == {0: "http://a:6066", 1: "http://b:6066", 2: "http://a:6066",
                      3: "http://b:6066", 4: "http://a:6066"}  # fmt: skip
    assert follower.owner("other", 0) is None


def test_an_assignment_from_a_leader_without_urls_leaves_owners_unknown() -> None:
    plain = RoundRobinPartitionAssignor.assign(Cluster(), {"m": member("")})
    follower = UrlSharingRoundRobin()
    follower.on_assignment(plain["m"])  # b"": a worker of the release before
    assert follower.owner("tx", 0) is None
