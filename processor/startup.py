"""The worker class `faust worker` runs: Faust's, plus a wait for the broker at start.

Chosen behaviour for a broker outage (docs/operations.md, "The broker is
down"): workers wait for the broker; they never give up on it.
- A running worker rides out an outage of any length: aiokafka reconnects
  by itself (measured on Apache Kafka: 40 s of outage, the idle worker
  carried on when the broker came back).
- A worker whose batch cannot be confirmed or committed within
  LEDGER_REQUEST_TIMEOUT exits 75 (processor.agent): the outcome of its
  writes is unknown, so it must not write more. Its supervisor restarts it.
- A worker started while the broker is down - that restart, or any start -
  waits here until the broker answers. Faust's own start-up gives up
  within seconds with a traceback and exit 1 (measured: 2.5 s), which a
  supervisor would answer with a crash loop and back-off.
So an outage ends with no operator action, and exit 1 keeps meaning a bug.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from kafkaio.admin import wait_for_broker
from kafkaio.errors import BrokerUnavailable

log = logging.getLogger("ledger.worker")

#: Seconds between two "still waiting" lines while the broker is down.
REPORT_EVERY = 10.0


class BrokerWaitingWorker(faust.Worker):
    """Faust's worker, whose first start waits until the broker answers a metadata request."""

    async def on_first_start(self) -> None:
        await wait_for_the_broker(self.app)
        await super().on_first_start()


async def wait_for_the_broker(app: Any, probe_seconds: float = 5.0) -> None:
    bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)
    started = time.monotonic()
    reported = started
    while True:
        try:
            await asyncio.to_thread(wait_for_broker, bootstrap, probe_seconds)
        except BrokerUnavailable:
            now = time.monotonic()
            if now - reported >= REPORT_EVERY:
                reported = now
                log.warning(
                    "no broker answers at %s for %.0fs; waiting for it", bootstrap, now - started
                )
            continue
        if time.monotonic() - started > probe_seconds:
            log.warning("broker at %s answers again; starting", bootstrap)
        return
