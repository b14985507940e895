"""The agent: decode -> ledger core -> tables, one batch at a time, then commit.

Per batch: apply (processor.batch, pure), store and send the coalesced table
writes, send rejections and dead letters, wait until the broker has
acknowledged all of it, then commit the batch's source offsets and wait for
that too. The next batch writes nothing before the commit succeeded, so at
most one batch per partition is ever written but uncommitted: the property
docs/exactness.md builds on. A failed commit stops the worker at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NoReturn, cast

import faust
import orjson
from faust.types import TP

from kafkaio.admin import committed_offsets, first_offset_from, start_offsets
from kafkaio.settings import Settings
from ledger.keys import Placement
from processor.batch import Outcome, Record, apply_batch
from processor.metrics import WorkerMetrics
from processor.patience import until_answered
from processor.sequencing import Sequencer
from processor.transport import BatchConsumer, use_batch_transport
from processor.writer import WriteFailed, Writer

log = logging.getLogger("ledger.worker")
#: One key=value line per rejected row (INFO) or dead letter (WARNING): processor.logs.
rejects_log = logging.getLogger("ledger.rejects")

#: Exit code when a commit fails: the supervisor restarts the worker, which
#: recovers its tables from the changelogs and replays from the last commit.
EXIT_COMMIT_FAILED = 75


class BatchWorker:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # bytes in, bytes out (processor.state encodes them). Without key_type
        # and value_type Faust decodes changelog records as JSON on recovery,
        # fails on b"client:tx" keys, logs a warning per record, skips it and
        # never finishes recovering: a restarted worker would hang or lose state.
        self.accounts = app.Table(
            "accounts", partitions=settings.partitions, key_type=bytes, value_type=bytes
        )
        self.deposits = app.Table(
            "deposits", partitions=settings.partitions, key_type=bytes, value_type=bytes
        )
        # internal=True makes the worker create the topic (with our partition
        # count) before it subscribes; otherwise the subscription's metadata
        # request lets the broker auto-create it with its own default (Tansu:
        # 4, Kafka: num.partitions), and clients would hash to other partitions.
        # acks=False: this agent is the only one that commits `transactions`
        # offsets (after each batch, see `_commit`). With acks on, Faust also
        # commits from its own bookkeeping (on rebalance, on stop), which does
        # not see our commits and can commit an offset *below* ours, so a
        # replay would start a batch too early and apply it twice (seen in the
        # chaos test: 55 of 666 accounts wrong).
        self.source = app.topic(
            settings.transactions_topic,
            partitions=settings.partitions,
            internal=True,
            acks=False,
        )
        self.writer = Writer(settings.bootstrap_servers, settings.request_timeout)
        #: Seconds spent per step of a batch since start, and batches done.
        self.seconds: dict[str, float] = dict.fromkeys(
            ("fetch", "apply", "send", "confirm", "commit"), 0.0
        )
        self.batches = 0
        self.applied = 0
        #: Rows refused by the rules, per reason, and messages sent to the DLQ.
        self.rejected: Counter[str] = Counter()
        self.dead_lettered = 0
        self.sequencer = Sequencer()
        #: Partitions of `transactions` this worker owns right now.
        self.owned: set[int] = set()
        # Held for a whole batch (apply, write, flush, commit). A rebalance
        # takes it before giving partitions away, so a batch is never half
        # done when its partition changes hands, and no changelog record of
        # ours can land after the next owner has recovered the table.
        self.batch_lock = asyncio.Lock()
        #: partition -> (time of the last seek over a hole, seeks so far).
        self._seeks: dict[int, tuple[float, int]] = {}
        self.metrics = WorkerMetrics(settings.transactions_topic)
        #: Each client's key and partition (SPEC M1), checked for every record.
        self.placement = Placement(settings.partitions)

    async def on_assigned(self, tps: set[TP]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.settings.transactions_topic}
        new = mine - self.owned
        if new:
            # The first record of a partition must be the committed offset,
            # or the consumer skipped one: tell the sequencer what to expect.
            s = self.settings
            committed = await until_answered(
                committed_offsets, s.bootstrap_servers, s.app_id, s.transactions_topic, s.partitions
            )
            # With nothing committed, the partition starts at its first record
            # (auto offset reset = earliest). Measured: a fresh worker was once
            # handed a partition with nothing committed at offset 4805, not 0;
            # expecting the log start turns that into a hole and a seek back.
            expected = {p: committed.get(p, -1) for p in new}
            if any(offset < 0 for offset in expected.values()):
                starts = await until_answered(
                    start_offsets, s.bootstrap_servers, s.transactions_topic, s.partitions
                )
                expected = {p: o if o >= 0 else starts[p] for p, o in expected.items()}
            self.sequencer.expected.update(expected)
        self.owned |= mine

    async def on_revoked(self, tps: set[TP]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.settings.transactions_topic}
        async with self.batch_lock:
            self.owned -= mine
            self.sequencer.forget(mine)
            for partition in mine:
                self._seeks.pop(partition, None)

    def _consumer(self) -> BatchConsumer:
        return cast(BatchConsumer, self.app.consumer)

    def waited(self, seconds: float) -> None:
        """Time the drain loop spent waiting for a fetch (processor.transport)."""
        self.seconds["fetch"] += seconds

    def counts(self) -> str:
        reasons = " ".join(f"{reason}={n}" for reason, n in sorted(self.rejected.items()))
        steps = " ".join(f"{step}_s={s:.2f}" for step, s in self.seconds.items())
        return (
            f"applied={self.applied} dead_lettered={self.dead_lettered} {reasons} "
            f"batches={self.batches} {steps}"
        ).strip()

    async def process(self, records: Sequence[Record]) -> None:
        async with self.batch_lock:
            if self.app.rebalancing:
                # Faust sets this from the start of a rebalance until the
                # tables are recovered. Events taken before a rebalance can
                # reach the agent while Faust is still recovering the tables
                # from the changelogs; applying them then would let the
                # recovery overwrite this batch's writes with older values
                # (seen in the chaos test: one partition's accounts all
                # diverged). They are not committed; the consumer is sent
                # back to them (processor.transport, `rewind`).
                await self._consumer().rewind(list(records), self.sequencer.expected)
                return
            mine = [r for r in records if r.partition in self.owned]
            if len(mine) < len(records):
                # Taken before a rebalance that moved or is moving these
                # partitions: a partition still assigned here is sent back.
                others = [r for r in records if r.partition not in self.owned]
                await self._consumer().rewind(others, self.sequencer.expected)
            await self._process(mine)

    async def _process(self, records: Sequence[Record]) -> None:
        # Records of partitions given away were taken before the rebalance:
        # dropped above, uncommitted, the next owner applies them.
        if not records:
            return
        admitted = self.sequencer.admit(records)
        if admitted.duplicates:
            log.info("dropped %d records delivered twice", admitted.duplicates)
        clock = time.perf_counter
        started = clock()
        outcome = apply_batch(
            admitted.records, _dict_of(self.accounts), _dict_of(self.deposits), self.placement
        )
        applied = clock()
        self._write(self.accounts, outcome.account_writes)
        self._write(self.deposits, outcome.deposit_writes)
        self._report(outcome)
        sent = clock()
        await self._confirm()
        confirmed = clock()
        await self._commit(outcome.last_offsets)
        committed = clock()
        seconds = self.seconds
        seconds["apply"] += applied - started
        seconds["send"] += sent - applied
        seconds["confirm"] += confirmed - sent
        seconds["commit"] += committed - confirmed
        self.batches += 1
        self.metrics.batch_done(
            applied=outcome.applied,
            reasons=outcome.reasons,
            dead_lettered=len(outcome.dead),
            changelog={
                "accounts": len(outcome.account_writes),
                "deposits": len(outcome.deposit_writes),
            },
            seconds=committed - started,
        )
        self.applied += outcome.applied
        self.rejected.update(outcome.reasons)
        self.dead_lettered += len(outcome.dead)
        for partition in [p for p in self._seeks if p not in self.sequencer.waiting]:
            del self._seeks[partition]  # that hole is filled
        for partition, missing in admitted.holes.items():
            await self._fill_hole(partition, missing)
        for partition in admitted.held_back_from:
            if partition not in admitted.holes:
                await self._seek_again(partition)

    async def _fill_hole(self, partition: int, missing: int) -> None:
        """A record of `partition` was skipped by the consumer (see processor.sequencing)."""
        topic = self.settings.transactions_topic
        present = await until_answered(
            first_offset_from, self.settings.bootstrap_servers, topic, partition, missing
        )
        if present is not None and present > missing:
            # Offsets may skip (transaction markers, compaction): move on.
            log.warning("%s[%d] has no record %d; next is %d", topic, partition, missing, present)
            self.sequencer.skip_to(partition, present)
            await self.app.consumer.seek(TP(topic, partition), present)
            return
        log.warning("%s[%d]@%d was not delivered; reading again", topic, partition, missing)
        await self._seek_again(partition)

    async def retry_holes(self) -> None:
        """Re-seek partitions still waiting for a missing record (see `_seek_again`)."""
        async with self.batch_lock:
            for partition in list(self.sequencer.waiting):
                if partition in self.owned:
                    await self._seek_again(partition)

    async def _seek_again(self, partition: int) -> None:
        """Seek back to the missing record, again if records after it still arrive.

        One seek is not always enough: records already fetched beyond the hole
        reach Faust's drain loop after the seek, raise its read offset, and
        Faust then drops the re-fetched records below it. Once those stale
        records are through, a new seek delivers the missing one. Bounded: if
        it never comes, exit and let the restarted worker resume from the
        last commit (everything before the hole is committed).
        """
        topic = self.settings.transactions_topic
        now = time.monotonic()
        last, tries = self._seeks.get(partition, (0.0, 0))
        if now - last < 0.5:
            return
        if tries >= 40:
            _stop("%s[%d]: missing record never delivered; exiting", topic, partition)
        self._seeks[partition] = (now, tries + 1)
        await self.app.consumer.seek(TP(topic, partition), self.sequencer.expected[partition])

    def _write(self, table: Any, writes: list[tuple[int, bytes, bytes]]) -> None:
        """Store each value and send it to the table's changelog.

        The changelog partition is the source partition: the table is
        co-partitioned with `transactions`, so recovery finds a client's state
        where its events are.
        """
        store = _dict_of(table)
        for _partition, key, value in writes:
            store[key] = value
        self.writer.send_many(table.changelog_topic.get_topic_name(), writes)

    async def _confirm(self) -> None:
        """Every record of the batch acknowledged, or stop before committing its input."""
        try:
            await self.writer.confirm()
        except WriteFailed as exc:
            _stop("a write of this batch was not delivered (%s); stopping", exc)

    def _report(self, outcome: Outcome) -> None:
        send = self.writer.send
        for record, rejection in outcome.rejected:
            rejection["source"] = _source(record)
            rejects_log.info(
                "event=rejected topic=%s partition=%d offset=%d reason=%s client=%s tx=%s line=%s",
                record.topic,
                record.partition,
                record.offset,
                rejection["reason"],
                rejection["client"],
                rejection["tx"],
                rejection["line"],
            )
            send(self.settings.rejected_topic, record.key, orjson.dumps(rejection))
        for record, reason, detail in outcome.dead:
            rejects_log.warning(
                "event=dead_lettered topic=%s partition=%d offset=%d reason=%s detail=%s",
                record.topic,
                record.partition,
                record.offset,
                reason,
                orjson.dumps(detail).decode(),  # quoted: the detail has spaces
            )
            headers = [
                ("reason", reason.encode()),
                ("detail", detail.encode()),
                ("source", orjson.dumps(_source(record))),
            ]
            # The value goes on unchanged, so a fixed consumer can replay it.
            send(self.settings.dlq_topic, record.key, record.value, headers=headers)

    async def _commit(self, last_offsets: dict[int, int]) -> None:
        if not last_offsets:
            return
        topic = self.settings.transactions_topic
        offsets = {TP(topic, p): last + 1 for p, last in last_offsets.items()}
        consumer = self.app.consumer
        revoked = [tp for tp in offsets if tp not in consumer.assignment()]
        ok = not revoked and await consumer._commit(offsets)  # type: ignore[attr-defined]
        if not ok:
            # The outcome of the commit is unknown or negative, and the batch's
            # writes are already in the changelog. Writing anything more could
            # break the one-uncommitted-batch rule, so stop now, hard.
            _stop("commit of %s failed (revoked: %s); stopping", offsets, revoked)
        self.metrics.record_commit({tp.partition: o for tp, o in offsets.items()})


def _stop(message: str, *args: Any) -> NoReturn:
    """Exit at once, without writing or committing anything more (see EXIT_COMMIT_FAILED)."""
    log.critical(message, *args)
    logging.shutdown()
    os._exit(EXIT_COMMIT_FAILED)


def _dict_of(table: Any) -> Any:
    """The plain dict under a table's memory store.

    The store's own `get` raises and catches a KeyError per missing key, and
    nearly every deposit is a missing key when it is checked for a duplicate.
    """
    return getattr(table.data, "data", table.data)


def _source(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def install(app: faust.App, settings: Settings) -> BatchWorker:
    worker = BatchWorker(app, settings)
    # The agent: every fetch of `transactions` records goes to worker.process
    # whole (processor.transport says why not through a Faust stream). Adding
    # the topic to the app's topics is what subscribes the worker to it.
    use_batch_transport(app, settings.transactions_topic, worker.process, worker.waited)
    app.topics.add(worker.source)

    # Faust sends these signals as (app, set_of_tps) and awaits the receivers.
    async def assigned(_sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        await worker.on_assigned(args[0])

    async def revoked(_sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        await worker.on_revoked(args[0])

    app.on_partitions_assigned.connect(assigned)
    app.on_partitions_revoked.connect(revoked)

    @app.timer(0.5)  # type: ignore[untyped-decorator]
    async def retry_holes() -> None:
        # A hole may be the last thing in a partition: then no batch arrives
        # to trigger the next seek, so a timer does.
        await worker.retry_holes()

    @app.timer(60.0)  # type: ignore[untyped-decorator]
    async def log_counts() -> None:
        log.info("since start: %s", worker.counts())

    async def log_final_counts(_sender: Any, /, *_args: Any, signal: Any = None, **_: Any) -> None:
        log.info("at stop: %s", worker.counts())

    app.on_before_shutdown.connect(log_final_counts)

    @app.task  # type: ignore[untyped-decorator]
    async def tune_runtime() -> None:
        # The worker's start-up leaves the root logger at DEBUG even at -l warn,
        # so hot-path debug calls build records that are thrown away (~10%).
        logging.getLogger().setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))
        # Everything alive after start-up lives as long as the process: keep
        # the collector from scanning it again and again. A batch allocates
        # tens of thousands of short-lived objects; the default young
        # generation (700) would run a collection every few dozen events.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    return worker
