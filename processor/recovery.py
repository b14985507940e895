"""Faust's rebalance sequence, kept alive through timeouts and broker outages.

The worker has no Faust tables (its state is state.store's, restored by
state.restore from the partition's seek, processor.transport), but Faust's
Recovery service still runs every rebalance: it pauses and resumes the
input, and calls the consumer's `perform_seek`, where the state is restored.
Two things are changed:

- Faust bounds each step by the broker request timeout, and mode's
  `wait_first` reports a timeout the same way as a stopped service, so
  Faust's recovery loop ends for good: the worker keeps its partitions,
  never starts its fetcher and never becomes ready. Seen in the chaos test
  (3 workers, 2 cores, 5 s request timeout): two partitions idle for 5
  minutes, the recovery task gone without a log line. Here a timeout
  starts the recovery again instead, as a new rebalance would.
- The seek (the state's restore) is not bounded at all: a cold restore of a
  long history takes as long as the changelogs are, and cutting it off
  would only start it again. It waits out a broker outage itself
  (processor.patience).

A step that fails because the broker cannot be reached starts the recovery
again too, after a pause: seen in the broker kill -9 test on Apache Kafka,
both workers crashed with exit 1 when a rebalance's recovery asked for the
ends while the broker was down.

The TableManager subclass exists only to hand Faust this Recovery; it is
selected with the app's `TableManager` setting. Pinned: faust-streaming 0.15.3.
"""

from __future__ import annotations

import asyncio

from faust.tables import TableManager
from faust.tables.recovery import RebalanceAgain, Recovery, ServiceStopped
from mode.services import WaitArgT
from mode.utils.times import Seconds

from kafkaio.errors import KafkaIOError

#: Seconds between two tries of a recovery whose broker could not be reached.
UNREACHABLE_PAUSE = 1.0


class PatientRecovery(Recovery):
    async def _wait(self, coro: WaitArgT, timeout: Seconds | None = None) -> None:
        if getattr(coro, "__qualname__", "").endswith(".perform_seek"):
            timeout = None  # the state's restore (see the module docstring)
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


class PatientTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = PatientRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
