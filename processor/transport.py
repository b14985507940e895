"""Hand the worker each fetched batch of `transactions` records whole.

Faust delivers records one by one: for every message its drain loop takes a
lock, starts two asyncio tasks (`wait_first`), decodes an Event and queues it
for the stream, which the agent then takes apart again. Measured on this
machine (../shared/notes/faust-on-tansu.md) that machinery caps a worker near
14k events/s even when the agent does nothing. The ledger needs none of it:
the agent wants a batch of raw records, commits itself, and keeps its own
per-partition order check (processor.sequencing).

So the consumer's drain loop is replaced (`Consumer._drain_messages`, the
loop Faust's Fetcher service runs) by one that keeps everything Faust does
around a fetch - flow control, paused partitions during recovery, the
generation check on rebalance - and differs in one place: the records of the
source topic go to the handler as one list per fetch. Records of any other
topic (the changelogs, read while recovering the tables) still go through
Faust's per-message callback, so table recovery is Faust's own code path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from processor.assignment import assignor
from processor.batch import Consumed

BatchHandler = Callable[[list[Consumed]], Awaitable[None]]
#: Called with the source partitions assigned here once the tables are recovered.
ResumeHandler = Callable[[set[int]], Awaitable[None]]
WaitObserver = Callable[[float], None]
IdleObserver = Callable[[], None]
#: (generation when asked, records by partition, partitions active then)
Fetched = tuple[int, Any, Any]


#: How long the broker may hold a fetch that finds nothing new. Faust asks
#: aiokafka for 1500 ms (hard-coded in its driver). Measured with the
#: latency bench at a steady 10k events/s: the worker sat idle ~1.5 s at a
#: time, then got ~16k events at once (p50 1.1 s, p99 2.1 s); with 100 ms,
#: batches of 500-1000 events every ~70 ms (p99 200-400 ms). An idle worker
#: then asks ten times a second: nothing for a broker.
FETCH_MAX_WAIT_MS = 100


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, reading committed records only (unless told otherwise).

    Faust asks for read_committed only in its own exactly-once mode, which
    this worker does not use (its transactions are its own,
    processor.writer). Without it, the records of an aborted transaction
    - a crashed or fenced batch on a changelog, or an aborted producer
    transaction on `transactions` - would be recovered into the tables or
    applied. aiokafka reads the setting at start(), so it is set on the
    client before then. Pinned: faust-streaming 0.15.3, aiokafka 0.14.0
    (the private attribute is `_isolation_level` there).
    """

    #: kafkaio.settings `isolation_level` (set by processor.faust_app):
    #: read_uncommitted only for a broker whose read_committed is broken.
    isolation_level: ClassVar[str] = "read_committed"

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = self.isolation_level
        # Read at start() too. Pinned as above.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        # Round robin, as Faust chooses for an app without Faust tables, but
        # carrying each member's URL (processor.assignment: the balance API
        # forwards with it). aiokafka reads the strategy at start(), after this.
        self._assignor = assignor
        assignor.bind(consumer)
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """After a recovery: the source partitions go to their state's positions.

        Faust seeks every partition to the group's committed offset; the
        ledger resumes from the position its state records instead (the
        agent's `resume`), which is what makes expired or deleted group
        offsets harmless.
        """
        await super().perform_seek()
        transport = cast(BatchTransport, self.transport)
        mine = {tp.partition for tp in self.assignment() if tp.topic == transport.batch_topic}
        if mine:
            await transport.batch_resume(mine)

    async def _drain_messages(self, fetcher: Any) -> None:
        transport = cast(BatchTransport, self.transport)
        topic, handler = transport.batch_topic, transport.batch_handler
        waited, idle = transport.batch_waited, transport.batch_idle
        clock = time.perf_counter
        callback = self.callback
        app = self.app
        read_offset = self._read_offset
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        #: A prefetch smaller than this is topped up with what came in meanwhile (`_top_up`).
        cap = max(1, app.conf.broker_max_poll_records // 10)
        # The next fetch is asked for before the current batch is applied:
        # the consumer thread then receives and decodes it meanwhile, instead
        # of the agent waiting for it afterwards (measured: a third of a
        # worker's time went to waiting for fetches). Still one batch at a
        # time: the prefetched records wait until the batch before them is
        # committed.
        pending: asyncio.Future[Fetched] | None = None
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if pending is None:
                    pending = asyncio.ensure_future(self._fetch())
                asked = clock()
                generation, records, active = await pending
                pending = None
                if records and not self.should_stop:
                    (generation, records, active), pending = await self._top_up(
                        (generation, records, active), cap
                    )
                waited(clock() - asked)
                if not records or self.should_stop:
                    if not records:
                        idle()
                    continue
                batch: list[Consumed] = []
                paused: list[Consumed] = []
                for tp, tp_records in records.items():
                    if tp.topic == topic:
                        # Paused since the fetch (a rebalance): set aside.
                        into = paused if active is not None and tp not in active else batch
                        into.extend(tp_records)  # aiokafka's records, not copied
                        continue
                    if active is not None and tp not in active:
                        continue  # paused since the fetch (Faust skips these too)
                    for record in tp_records:
                        # Faust's own per-message path, as in its drain loop.
                        last = read_offset[tp]
                        if last is None or record.offset >= last:
                            await self.wait_first(
                                callback(self._to_message(tp, record)), self.suspend_flow.wait()
                            )
                            read_offset[tp] = record.offset
                if paused:
                    await self.rewind(paused)
                if not batch:
                    idle()
                    continue
                if pending is None:
                    pending = asyncio.ensure_future(self._fetch())
                if self.flow_active and app.consumer_generation_id == generation:
                    await _finish(handler(batch))
                else:
                    # A rebalance began after the fetch: these records may
                    # belong to another worker now, so they are not applied.
                    await self.rewind(batch)
        except self.consumer_stopped_errors:
            if app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise  # the Fetcher restarts the loop after a rebalance
        finally:
            if pending is not None:
                pending.cancel()

    async def _fetch(self) -> Fetched:
        """One fetch, with the group generation it came back in.

        The generation is read when the records are in hand, not when they
        were asked for: a prefetch may wait through a whole rebalance (flow
        stopped) and then fetch from the positions the new generation set.
        Measured the other way round: a worker dropped such fetches as
        stale, its consumer had moved past them, and two partitions that
        had no commit yet were never processed (a chaos-test stall).
        """
        records, active = await self._wait_next_records(1.0)
        return self.app.consumer_generation_id, records, active

    async def _top_up(
        self, fetched: Fetched, cap: int
    ) -> tuple[Fetched, asyncio.Future[Fetched] | None]:
        """A small prefetch, with whatever the consumer received while the last batch ran.

        The prefetch returns with the first records to arrive, often a few
        dozen while the batch before is still committing; under a steady
        flow every batch was then that small, each costing a full commit
        cycle (~30 ms): measured at 10k events/s, batches of ~30 events, the
        worker applying ~1k/s and falling seconds behind. Asked once more
        without waiting, the consumer hands over what it has buffered since.
        Records of another generation or partition set are not merged: they
        come back as the next fetch (the second value), handled as usual.
        """
        generation, records, active = fetched
        if sum(len(rs) for rs in records.values()) >= cap:
            return fetched, None
        more, more_active = await self._wait_next_records(0)
        if not more:
            return fetched, None
        if self.app.consumer_generation_id != generation or more_active != active:
            done: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()
            done.set_result((self.app.consumer_generation_id, more, more_active))
            return fetched, done
        merged = {tp: list(rs) for tp, rs in records.items()}
        for tp, rs in more.items():
            merged.setdefault(tp, []).extend(rs)  # after what came first: offset order holds
        return (generation, merged, active), None

    async def rewind(self, dropped: list[Consumed], expected: dict[int, int] | None = None) -> None:
        """Seek back over records fetched but not applied, for partitions still assigned here.

        The consumer has moved past them. Faust's seek to the committed
        offsets after a rebalance brings back those of partitions with a
        commit, but not of partitions that have none yet (aiokafka's
        seek_to_committed leaves those where they are); if nothing new
        arrives there, nothing would ever bring them back: measured in the
        chaos test, whole uncommitted partitions never processed. Each
        partition goes back to its first dropped record, or to `expected`
        (the next offset the worker will apply) if that is earlier.
        """
        first: dict[int, int] = {}
        for record in dropped:
            first.setdefault(record.partition, record.offset)
        assigned = self.assignment()
        for partition, offset in first.items():
            tp = TP(dropped[0].topic, partition)
            if tp in assigned:
                if expected is not None and partition in expected:
                    offset = min(offset, expected[partition])
                await self.seek(tp, offset)


async def _finish(batch: Awaitable[None]) -> None:
    """Run the batch to its end even if the drain loop is cancelled meanwhile.

    Faust stops a worker (SIGTERM) and restarts the drain loop on a rebalance
    by cancelling it. A batch cancelled halfway would have written changelog
    records without committing its offsets: exact still (docs/exactness.md),
    but the next owner would replay it. Finishing it first means a graceful
    stop commits everything it applied; the consumer is still running then
    (Faust stops the fetcher before the consumer).
    """
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    batch_topic: str = ""
    batch_handler: BatchHandler
    batch_waited: WaitObserver
    batch_resume: ResumeHandler
    batch_idle: IdleObserver


def use_batch_transport(
    app: Any,
    topic: str,
    handler: BatchHandler,
    waited: WaitObserver,
    resume: ResumeHandler,
    idle: IdleObserver,
) -> None:
    """Make `app` deliver `topic`'s records to `handler`, a fetch at a time.

    `waited` is told how long each wait for a fetch took (the worker's time
    split: fetching versus applying); `resume` places the consumer on
    `topic`'s partitions after each table recovery (`perform_seek`); `idle`
    is called for each fetch that brought no record of `topic`.
    """
    transport = BatchTransport(app.conf.broker_consumer, app)
    transport.batch_topic = topic
    transport.batch_handler = handler
    transport.batch_waited = waited
    transport.batch_resume = resume
    transport.batch_idle = idle
    app.transport = transport
