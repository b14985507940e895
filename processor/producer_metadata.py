"""Keep the producer's metadata for every topic it knows (aiokafka 0.14 bug workaround).

The bug: an aiokafka client starts by tracking *no* topics (`client._topics`
empty), which makes each metadata refresh ask for ALL topics. The first send
to a topic that was not in that answer (here: `transactions-rejected` or
`transactions-dlq`, which nobody creates ahead of time; the broker creates them
on first use) calls `client.add_topic(topic)`. From then on the client tracks
only that one topic, and the next refresh *replaces* the cluster metadata with
an answer that has just it. Every other topic -- the table changelogs -- loses
its partition leaders in the producer's view.

Batches already in the producer's accumulator for those changelogs then never
leave it: the sender sees "leader unknown", forces a metadata refresh, gets an
answer without those topics again, and loops. Nothing re-adds them, because
that only happens on a new `send()` to the topic, and the agent is stuck in
`producer.flush()` waiting for those very batches (processor.agent), so it
sends nothing, commits nothing, and the group's lag never goes down. The batches
would only expire after the producer request timeout (Faust's default is 20
minutes), and then as failed writes. A rebalance "un-sticks" it only because
the partitions move to a process whose producer never hit the race.

When it happens: only if the changelog writes of a batch are still in the
accumulator (producer_linger) when the first rejection or dead letter triggers
the add_topic refresh, i.e. in the first batch that rejects something. That is
usually the first batch a worker applies when records are already waiting at
start-up, hence "about half the runs, only when input predates the worker".
Seen in the debug dumps: agent in `producer.flush()`, accumulator holding
changelog batches with `leader_for_partition() is None`, nothing in flight,
and the producer client tracking only {'transactions-rejected'}.

The fix: when a client that tracked "all topics" starts tracking an explicit
set, seed that set with every topic it already has metadata for, so narrowing
the request never drops a topic the producer may have batches for. It changes
nothing for clients that already track an explicit set (the consumer's client
tracks its subscription) and costs only a few more topics per metadata
request.
"""

from __future__ import annotations

from typing import Any

from aiokafka.client import AIOKafkaClient

_PATCHED = "_ledger_keeps_known_topics"


def keep_known_topics_on_add() -> None:
    """Patch `AIOKafkaClient.add_topic` once per process (idempotent)."""
    if getattr(AIOKafkaClient.add_topic, _PATCHED, False):
        return
    original = AIOKafkaClient.add_topic

    def add_topic(self: AIOKafkaClient, topic: str) -> Any:
        tracked = self._topics  # private in aiokafka 0.14; the set that add_topic grows
        if not tracked:
            # Until now every refresh asked for all topics. Keep every topic we
            # already know, or the first refresh after this call forgets them.
            tracked.update(self.cluster.topics())
        return original(self, topic)

    setattr(add_topic, _PATCHED, True)
    AIOKafkaClient.add_topic = add_topic
