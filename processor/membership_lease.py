"""How long this worker can be sure it still owns its partitions: a lease from its heartbeats.

Tested with aiokafka 0.14.0 (pinned in pyproject); `install` refuses other versions.

Why a read needs it: a replica frozen past the session timeout (SIGSTOP, a
stalled VM, a swap storm) has lost its partitions to another replica, which
may have applied more input since. When it wakes up its event loop can
answer a balance query from its old state before its consumer thread has
heard of the loss: a stale answer that looks fresh (the failure reported
against Kafka Streams, KAFKA-6555, and Faust's table views, #187).

The group coordinator cannot take a member's partitions away before that
member's session has expired, and a session runs for `session timeout`
from the coordinator's receipt of the member's last heartbeat, which is
after the member sent it. So until `sent + session timeout` (local
monotonic clock) of the last heartbeat the coordinator accepted, no other
member can own these partitions: the lease. (A heartbeat answered
REBALANCE_IN_PROGRESS also keeps the session alive, and this member then
gives its partitions up itself, revoking before it rejoins.) aiokafka keeps
the time of its last good heartbeat in a local variable of its heartbeat
routine; this patch wraps `GroupCoordinator._do_heartbeat`, which returns
whether the heartbeat kept the membership, to record it where readers see it.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator

from processor.pins import require

TESTED_AIOKAFKA = ("0.14.0",)


class Lease:
    """When the last heartbeat the coordinator accepted was sent (the consumer thread writes it)."""

    def __init__(self) -> None:
        self.heartbeat_sent: float | None = None

    def valid(self, session_timeout: float) -> bool:
        """Whether no other member can own this member's partitions yet."""
        sent = self.heartbeat_sent  # one read: the consumer's thread may write meanwhile
        return sent is not None and time.monotonic() < sent + session_timeout


#: The process's one lease (one consumer group member per worker process).
lease = Lease()

_original = GroupCoordinator._do_heartbeat


async def _do_heartbeat(self: Any) -> bool:
    sent = time.monotonic()
    kept = bool(await _original(self))
    if kept:
        lease.heartbeat_sent = sent
    return kept


def install() -> None:
    """Record accepted heartbeats in `lease` (idempotent)."""
    require(
        "processor.membership_lease",
        "aiokafka",
        TESTED_AIOKAFKA,
        "aiokafka.consumer.group_coordinator.GroupCoordinator._do_heartbeat and _heartbeat_routine",
    )
    GroupCoordinator._do_heartbeat = _do_heartbeat
