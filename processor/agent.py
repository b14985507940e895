"""The agent: decode -> ledger core -> tables, a batch at a time, a transaction per partition.

Per batch: apply (processor.batch, pure), store the coalesced table writes
and send them, with the rejections and dead letters, each in the
transaction of its input partition (processor.writer); write each
partition's position record (the next input offset its state reflects)
last and commit the transactions. Only then the group's offsets are
committed, for monitoring: a worker resumes from its state's positions,
never from the group's offsets (`resume`), so expired, deleted or reset
group offsets change nothing. A failed or fenced transaction stops the
worker at once (exit 75). docs/exactness.md has the whole argument.
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

from kafkaio.admin import (
    OffsetProbe,
    committed_offsets,
    latest_value,
    partition_count,
    start_offsets,
)
from kafkaio.settings import Settings
from ledger.keys import Placement
from processor import control_batches
from processor.batch import TOO_LARGE, Outcome, Record, apply_batch
from processor.metrics import WorkerMetrics
from processor.patience import until_answered
from processor.recovery import TrueEndRecovery
from processor.sequencing import Admitted, Sequencer
from processor.state import decode_position, encode_position, position_key
from processor.transport import BatchConsumer, use_batch_transport
from processor.writer import Fenced, Headers, Outgoing, WriteFailed, Writer

log = logging.getLogger("ledger.worker")
#: One key=value line per rejected row (INFO) or dead letter (WARNING): processor.logs.
rejects_log = logging.getLogger("ledger.rejects")

#: Exit code when a batch's transaction fails or is fenced: the supervisor
#: restarts the worker, which recovers its tables from the changelogs and
#: resumes from the positions they hold.
EXIT_COMMIT_FAILED = 75
#: Exit code when a partition's state and its input disagree (sysexits'
#: EX_DATAERR): the input the state needs next was deleted, or the group
#: committed past the state. A restart cannot help; see docs/operations.md.
EXIT_INPUT_MISMATCH = 65


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
        self.writer = Writer(
            settings.bootstrap_servers,
            settings.app_id,
            settings.request_timeout,
            unfenced=settings.fault_unfenced == "1",
        )
        #: Seconds spent per step of a batch since start, and batches done.
        self.seconds: dict[str, float] = dict.fromkeys(
            ("fetch", "skips", "apply", "send", "confirm", "commit"), 0.0
        )
        self.batches = 0
        self.applied = 0
        #: Holes passed because the consumer read them as markers, and holes asked about.
        self.markers_read = 0
        self.holes_asked = 0
        #: Rows refused by the rules, per reason, and messages sent to the DLQ.
        self.rejected: Counter[str] = Counter()
        self.dead_lettered = 0
        self.sequencer = Sequencer()
        #: Asks the broker what is really at a hole of the input (processor.sequencing).
        self.probe = OffsetProbe(settings.bootstrap_servers, settings.isolation_level)
        #: Partitions of `transactions` this worker owns right now: fenced,
        #: recovered and resumed from their positions (`resume`).
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
        #: Partition counts of the rejected and DLQ topics, once known.
        self._side: tuple[int, int] | None = None
        #: partition -> when records of it last arrived (`past_trailing_markers`).
        self._last_records: dict[int, float] = {}
        #: Since when fetches have brought no record (None: the last one did).
        self._idle_since: float | None = None

    async def fence(self, partitions: set[int]) -> None:
        """Take over these partitions' transactional ids, before their changelogs are read.

        Called by processor.recovery at the start of every table recovery.
        From here on no earlier owner of them can commit a transaction.
        A fence that cannot complete (the broker refuses or never answers)
        stops the worker for a restart: reading the changelogs unfenced
        would let an earlier owner's late commit land after them.
        """
        try:
            await self.writer.fence(partitions)
        except WriteFailed as exc:
            _stop("could not take over partitions %s (%s); stopping", sorted(partitions), exc)

    async def resume(self, partitions: set[int]) -> None:
        """Send each recovered input partition's consumer to its state's position.

        Called after the tables are recovered, instead of Faust's seek to the
        group's committed offsets (processor.transport). The position record
        is the state's own: written in the transaction of the batch it
        closes, so it is exactly what the state reflects. Refuses (exit 65)
        where input and state cannot both be right:
        - the log starts past the position: events the state never applied
          were deleted (retention, delete-records);
        - the group committed past the position: the state lost batches the
          group saw committed (a changelog deleted or emptied by hand, or the
          group's offsets moved forward by an operator).
        No position record and nothing committed: a new partition, from offset 0.
        """
        s = self.settings
        mine = sorted(partitions)
        store = _dict_of(self.accounts)
        positions = {}
        for p in mine:
            raw = store.get(position_key(p))
            positions[p] = decode_position(raw) if raw is not None else 0
        starts = await until_answered(
            start_offsets, s.bootstrap_servers, s.transactions_topic, s.partitions
        )
        if self._side is None:
            self._side = await until_answered(self._count_side_partitions)
        committed = await until_answered(
            committed_offsets, s.bootstrap_servers, s.app_id, s.transactions_topic, s.partitions
        )
        for p in mine:
            position = positions[p]
            if starts.get(p, 0) > position:
                _refuse(
                    "%s[%d] starts at offset %d but the state has applied only the events "
                    "below %d: events %d..%d were deleted before any worker applied them. "
                    "Nothing was skipped. Restore them into the topic, or accept their loss "
                    "with `ledger-admin rebuild` (docs/operations.md).",
                    s.transactions_topic, p, starts[p], position, position, starts[p] - 1,
                )  # fmt: skip
            if committed.get(p, -1) > position and await self._stale(p, committed[p]):
                # This copy of the state was read before another replica
                # applied more (this process was paused, or lost the partition
                # in the meantime: seen in the zombie test, a replica frozen
                # between its recovery and here). Not a disagreement: start
                # over, and recover the state as it is now.
                _stop(
                    "%s[%d]: the state read here (position %d) is older than the changelog's "
                    "(another replica applied up to %d meanwhile); restarting to recover it",
                    s.transactions_topic, p, position, committed[p],
                )  # fmt: skip
            if committed.get(p, -1) > position:
                _refuse(
                    "group %r committed offset %d of %s[%d], but the state (changelog "
                    "position) has applied only the events below %d: the changelogs lost "
                    "batches or the group's offsets were moved forward. Nothing was "
                    "applied. Rebuild the state with `ledger-admin rebuild` "
                    "(docs/operations.md).",
                    s.app_id, committed[p], s.transactions_topic, p, position,
                )  # fmt: skip
        topic = s.transactions_topic
        for p in mine:
            await self.app.consumer.seek(TP(topic, p), positions[p])
        self.sequencer.expected.update(positions)
        self.owned |= set(mine)
        log.info("resuming from the state's positions %s", positions)
        # Monitoring reads the group's offsets: bring them to the state's
        # position (they may be behind by a batch, or gone entirely).
        behind = {p: o for p, o in positions.items() if committed.get(p, -1) != o}
        await self._commit_offsets(behind)

    async def _stale(self, partition: int, committed: int) -> bool:
        """Whether the changelog's own latest position for `partition` reaches `committed`."""
        s = self.settings
        raw = await until_answered(
            latest_value,
            s.bootstrap_servers,
            s.changelog_topic("accounts"),
            partition,
            position_key(partition),
            s.isolation_level,
        )
        return raw is not None and decode_position(raw) >= committed

    async def on_revoked(self, tps: set[TP]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.settings.transactions_topic}
        async with self.batch_lock:
            self.owned -= mine
            self.sequencer.forget(mine)
            self.writer.release(mine)
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
            f"batches={self.batches} markers_read={self.markers_read} "
            f"holes_asked={self.holes_asked} {steps}"
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
        now = time.monotonic()
        self._idle_since = None
        for partition in {r.partition for r in records}:
            self._last_records[partition] = now
        admitted = self.sequencer.admit(records)
        if admitted.holes:
            asked = time.perf_counter()
            self._past_markers_read(admitted)
            await self._past_skips(admitted)
            self.seconds["skips"] += time.perf_counter() - asked
        if admitted.duplicates:
            log.info("dropped %d records delivered twice", admitted.duplicates)
        clock = time.perf_counter
        started = clock()
        outcome = apply_batch(
            admitted.records, _dict_of(self.accounts), _dict_of(self.deposits), self.placement
        )
        applied = clock()
        try:
            self._write(self.accounts, outcome.account_writes)
            self._write(self.deposits, outcome.deposit_writes)
            self._report(outcome)
        except Fenced as exc:
            _stop("fenced: another worker owns this partition now (%s); stopping", exc)
        except WriteFailed as exc:
            _stop("a write of this batch was refused (%s); stopping", exc)
        sent = clock()
        positions = {p: last + 1 for p, last in outcome.last_offsets.items()}
        await self._commit_transactions(positions)
        confirmed = clock()
        await self._commit_offsets(positions)
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

    def _past_markers_read(self, admitted: Admitted) -> None:
        """Go on past holes the consumer itself read as transaction markers (no question asked).

        processor.control_batches notes every control batch aiokafka's
        fetcher passes over; a hole made only of those held no record.
        """
        topic = self.settings.transactions_topic
        while True:
            skips = {
                p
                for p, missing in admitted.holes.items()
                if admitted.held.get(p)
                and control_batches.seen.covers(topic, p, missing, admitted.held[p][0].offset)
            }
            if not skips:
                return
            self.markers_read += len(skips)
            self.metrics.holes.labels("marker_read").inc(len(skips))
            for p in skips:
                self.sequencer.skip_to(p, admitted.held[p][0].offset)
                control_batches.seen.forget_below(topic, p, admitted.held[p][0].offset)
            self.sequencer.readmit(admitted, skips)

    async def _past_skips(self, admitted: Admitted) -> None:
        """Go on past holes where the broker has no record: no seek, no fetching again.

        Every transaction of a transactional producer (produce-csv commits
        one a second) leaves a commit marker on each partition it wrote: an
        offset that is never delivered. The broker is asked all the same (a
        hole can also be a record the consumer skipped: processor.sequencing):
        only when its first record at or after the missing offset is the one
        held right after the hole are the held records admitted.
        """
        topic = self.settings.transactions_topic
        while admitted.holes:
            asked = {p: missing for p, missing in admitted.holes.items() if admitted.held.get(p)}
            if not asked:
                return
            # All of them in one question: a batch often has a marker on most partitions.
            self.holes_asked += len(asked)
            self.metrics.holes.labels("asked").inc(len(asked))
            present = await until_answered(self.probe.first_offsets_from, topic, asked)
            skips = set()
            for partition, found in present.items():
                if found == admitted.held[partition][0].offset:
                    self.sequencer.skip_to(partition, found)
                    skips.add(partition)
            if not skips:
                return
            self.sequencer.readmit(admitted, skips)

    async def _fill_hole(self, partition: int, missing: int) -> None:
        """A record of `partition` was skipped by the consumer (see processor.sequencing)."""
        topic = self.settings.transactions_topic
        present = await until_answered(self.probe.first_offset_from, topic, partition, missing)
        if present is not None and present > missing:
            # Offsets may skip (transaction markers, compaction): move on.
            log.warning("%s[%d] has no record %d; next is %d", topic, partition, missing, present)
            self.sequencer.skip_to(partition, present)
            await self.app.consumer.seek(TP(topic, partition), present)
            return
        log.warning("%s[%d]@%d was not delivered; reading again", topic, partition, missing)
        await self._seek_again(partition)

    def idle(self) -> None:
        """A fetch brought no record: the consumer has nothing more in hand."""
        if self._idle_since is None:
            self._idle_since = time.monotonic()

    async def past_trailing_markers(self, quiet: float = 0.2) -> None:
        """Move an idle partition's position past the markers at its end.

        A transactional producer's last transaction ends with a commit
        marker: the partition's end is one past the last record, so a
        position at `last record + 1` would leave a lag of 1 for good, in
        `ledger-admin status`, `export-snapshot --wait`, the lag metric and
        any Kafka tool (Kafka's own consumers commit their position, which
        is past the markers, for the same reason). Once a partition has had
        no record for `quiet` seconds while its high watermark is past the
        position, the broker is asked: if it has no record there up to its
        end, the position record moves to that end, in a transaction of its
        own, and the group's offset with it. No record is ever passed over:
        under read_committed the end is the last stable offset. Only asked
        once fetches come back empty: while records flow, a marker is
        followed by records and the hole check passes it (`_past_skips`);
        and only once the consumer has read up to the end: markers it read
        on the way (processor.control_batches) then need no question.
        """
        topic = self.settings.transactions_topic
        consumer = self.app.consumer
        now = time.monotonic()
        if self._idle_since is None or now - self._idle_since < quiet:
            return
        async with self.batch_lock:
            if self.app.rebalancing:
                return
            asked = {}
            known: dict[int, int] = {}
            for p in sorted(self.owned):
                expected = self.sequencer.expected.get(p)
                if expected is None or p in self.sequencer.waiting:
                    continue
                if now - self._last_records.get(p, 0.0) < quiet:
                    continue
                highwater = consumer.highwater(TP(topic, p))
                if highwater is None or highwater <= expected:
                    continue
                read_to = await consumer.position(TP(topic, p))
                if read_to is not None and read_to < highwater:
                    # The consumer has yet to hand over what lies up to the end
                    # (records, or markers it will note): not a question yet.
                    continue
                if control_batches.seen.covers(topic, p, expected, highwater):
                    # Only markers the consumer has read lie up to the end.
                    known[p] = highwater
                    self.markers_read += 1
                    self.metrics.holes.labels("marker_read").inc()
                else:
                    asked[p] = expected
            moves = dict(known)
            if asked:
                self.holes_asked += len(asked)
                self.metrics.holes.labels("asked").inc(len(asked))
                answers = await until_answered(self.probe.next_records_or_ends, topic, asked)
            else:
                answers = {}
            for p, (end, is_record) in answers.items():
                if not is_record and end > asked[p]:
                    moves[p] = end
                # Either way, not asked again before `quiet` has passed.
                self._last_records[p] = now
            for p in known:
                self._last_records[p] = now
            if moves:
                for p, end in moves.items():
                    self.sequencer.skip_to(p, end)
                    control_batches.seen.forget_below(topic, p, end)
                await self._commit_transactions(moves)
                await self._commit_offsets(moves)

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

    async def _commit_transactions(self, positions: dict[int, int]) -> None:
        """Each partition's position record, then its transaction committed; or stop.

        The position is stored in the table too, so this worker's own view
        matches what a recovery would read.
        """
        accounts, topic = _dict_of(self.accounts), self.accounts.changelog_topic.get_topic_name()
        records = {}
        for p, next_offset in positions.items():
            key, value = position_key(p), encode_position(next_offset)
            accounts[key] = value
            records[p] = (topic, key, value)
        try:
            await self.writer.commit(records)
        except Fenced as exc:
            # A worker that froze past its session timeout (SIGSTOP, a VM
            # pause, a network cut) finds its partitions owned by another.
            _stop("fenced: another worker owns this partition now (%s); stopping", exc)
        except WriteFailed as exc:
            _stop("the transaction of this batch was not committed (%s); stopping", exc)

    def _report(self, outcome: Outcome) -> None:
        """Rejections and dead letters, into the transactions of their source partitions.

        Each goes to the same partition number of its topic as its source
        (where the topic has that many): a batch's transaction for input
        partition p then spans the changelogs' p and these topics' p only,
        instead of every partition a key hashes to; fewer partitions in a
        transaction, fewer markers for the broker to write (bench/README.md).
        For a well-keyed record it is also the key's own partition (SPEC M1:
        murmur2, and these topics are created with the input's count).
        """
        rejected_topic, dlq_topic = self.settings.rejected_topic, self.settings.dlq_topic
        rejected_n, dlq_n = self._side_partitions()
        out: list[Outgoing] = []
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
            value = orjson.dumps(rejection)
            p = record.partition
            out.append(
                Outgoing(p, rejected_topic, record.key, value, p if p < rejected_n else -1, None)
            )
        for record, reason, detail in outcome.dead:
            rejects_log.warning(
                "event=dead_lettered topic=%s partition=%d offset=%d reason=%s detail=%s",
                record.topic,
                record.partition,
                record.offset,
                reason,
                orjson.dumps(detail).decode(),  # quoted: the detail has spaces
            )
            headers: Headers = [
                ("reason", reason.encode()),
                ("detail", detail.encode()),
                ("source", orjson.dumps(_source(record))),
            ]
            # The value goes on unchanged, so a fixed consumer can replay it;
            # one too large to copy safely is left at its source (the header).
            kept = None if reason == TOO_LARGE else record.value
            p = record.partition
            out.append(Outgoing(p, dlq_topic, record.key, kept, p if p < dlq_n else -1, headers))
        self.writer.send_each(out)

    def _side_partitions(self) -> tuple[int, int]:
        # Known since the first `resume`, which comes before any batch.
        return self._side or (0, 0)

    def _count_side_partitions(self) -> tuple[int, int]:
        """Partition counts of the rejected and DLQ topics (they exist: processor.startup)."""
        s = self.settings
        return (
            partition_count(s.bootstrap_servers, s.rejected_topic),
            partition_count(s.bootstrap_servers, s.dlq_topic),
        )

    async def _commit_offsets(self, positions: dict[int, int]) -> None:
        """The group's offsets, for monitoring (lag, `export-snapshot --wait`): best effort.

        They never decide where a worker resumes (`resume`), so a commit
        refused because a rebalance began is only logged.
        """
        if not positions:
            return
        topic = self.settings.transactions_topic
        offsets = {TP(topic, p): o for p, o in positions.items()}
        consumer = self.app.consumer
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets and not await consumer._commit(offsets):  # type: ignore[attr-defined]
            log.info("group offsets %s not committed (a rebalance began)", offsets)
        self.metrics.record_commit(positions)


def _stop(message: str, *args: Any) -> NoReturn:
    """Exit at once, without writing or committing anything more (see EXIT_COMMIT_FAILED)."""
    log.critical(message, *args)
    logging.shutdown()
    os._exit(EXIT_COMMIT_FAILED)


def _refuse(message: str, *args: Any) -> NoReturn:
    """Stop for good: input and state disagree (see EXIT_INPUT_MISMATCH)."""
    log.critical("refusing to go on: " + message, *args)
    logging.shutdown()
    os._exit(EXIT_INPUT_MISMATCH)


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
    use_batch_transport(
        app,
        settings.transactions_topic,
        worker.process,
        worker.waited,
        worker.resume,
        worker.idle,
    )
    # Every table recovery first takes over the transactional ids of the
    # partitions it is about to read (processor.recovery, processor.writer).
    TrueEndRecovery.before_reading = worker.fence
    app.topics.add(worker.source)

    # Faust sends this signal as (app, set_of_tps) and awaits the receivers.
    async def revoked(_sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        await worker.on_revoked(args[0])

    app.on_partitions_revoked.connect(revoked)

    @app.timer(0.5)  # type: ignore[untyped-decorator]
    async def retry_holes() -> None:
        # A hole may be the last thing in a partition: then no batch arrives
        # to trigger the next seek, so a timer does.
        await worker.retry_holes()

    @app.timer(0.2)  # type: ignore[untyped-decorator]
    async def past_trailing_markers() -> None:
        await worker.past_trailing_markers()

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
