"""Broker calls the worker makes outside Faust's clients: asked again until the broker answers.

The worker reads committed offsets and log starts with confluent-kafka
(kafkaio.admin) when it is handed partitions, and looks for a missing
record when a partition's sequence has a hole. Those calls give up after
about 30 s; raised inside a Faust signal handler, that crashed the worker
with exit 1 (seen in the broker kill -9 test on Apache Kafka: both workers,
their rebalance's `committed offsets` timing out while the broker was down).
The worker's choice for a broker outage is to wait it out
(processor.startup), so these calls wait too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from kafkaio.errors import BrokerUnavailable

log = logging.getLogger("ledger.worker")
P = ParamSpec("P")
R = TypeVar("R")

#: Seconds between two tries, and between two "still asking" log lines.
PAUSE = 1.0
REPORT_EVERY = 10.0


async def until_answered(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`call(*args, **kwargs)` in a thread, again after each BrokerUnavailable, until it answers."""
    started = reported = time.monotonic()
    while True:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except BrokerUnavailable as exc:
            now = time.monotonic()
            if now == started or now - reported >= REPORT_EVERY:
                reported = now
                log.warning("%s; asking again until the broker answers", exc)
            await asyncio.sleep(PAUSE)
