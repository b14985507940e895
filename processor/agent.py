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
import functools
import gc
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import faust
import orjson
from aiokafka.errors import IllegalStateError
from faust.types import TP

from kafkaio.admin import (
    EndOffsets,
    OffsetProbe,
    committed_offsets,
    group_members,
    latest_value,
    partition_count,
    start_offsets,
)
from kafkaio.errors import KafkaIOError
from kafkaio.settings import Settings
from ledger.keys import Placement
from processor import control_batches
from processor.batch import TOO_LARGE, Consumed, Outcome, apply_batch_to
from processor.metrics import WorkerMetrics
from processor.patience import until_answered
from processor.sequencing import Admitted, Sequencer
from processor.state import decode_position, encode_position, position_key
from processor.transport import BatchConsumer, use_batch_transport
from processor.writer import Fenced, Headers, Outgoing, WriteFailed, Writer
from state.restore import restore
from state.slots import claim
from state.standby import Standby
from state.store import TABLES, PartitionStore, Shared, Tuning, open_store

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
MIB = 1024**2


class BatchWorker:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        #: Each owned partition's state on disk (state.store), in this process's
        #: slot of the data directory (state.slots). Faust's tables are not
        #: used: their recovery reads every changelog record through an asyncio
        #: path (~4k records/s) and from offset 0 at every rebalance; the
        #: stores read only the changelog tails, in bulk (state.restore).
        self.slot = claim(Path(settings.data_dir) / settings.app_id)
        self.shared = Shared(
            Tuning(settings.state_cache_mb * MIB, settings.state_write_buffer_mb * MIB)
        )
        self.stores: dict[int, PartitionStore] = {}
        #: The running (or last) restore of assigned partitions (`resume`).
        self._restoring: asyncio.Future[None] | None = None
        #: A `resume` is under way: no batch may run until it is done (`process`).
        self._resuming = False
        #: Warm copies of partitions others own (state.standby), or None.
        self.standby: Standby | None = None
        if settings.standby_replicas > 0:
            self.standby = Standby(
                settings.bootstrap_servers,
                settings.isolation_level,
                {t: settings.changelog_topic(t) for t in TABLES},
                self._store_path,
                self.shared,
            )
        self.changelogs = {t: settings.changelog_topic(t) for t in TABLES}
        #: When `from:` offsets were last recorded (state.store `checkpoint`),
        #: and whether a batch was stored since.
        self._checkpointed = 0.0
        self._unrecorded = False
        self.ends = EndOffsets(settings.bootstrap_servers, settings.isolation_level)
        #: Tombstones for deposits of locked accounts (processor.batch): only
        #: where every reader skips aborted records (not on Tansu).
        self._forget_locked = settings.isolation_level == "read_committed"
        #: Test hook (LEDGER_FAULT_SLOW_RECOVERY): the first restore takes this much longer.
        self._slow_restore = settings.fault_slow_recovery
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
            debug=settings.producer_debug,
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
        # Gaps made only of markers the consumer read are passed while the
        # records are admitted (processor.sequencing says why).
        self.sequencer = Sequencer(
            functools.partial(control_batches.seen.covers, settings.transactions_topic)
        )
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

    async def restore(self, partitions: set[int]) -> None:
        """Fence the partitions' earlier owners, then bring their stores up to the changelogs.

        Fencing first: once it returns, no earlier owner can commit on these
        changelog partitions, so the ends read by the restore are final.
        """
        s = self.settings
        await self.fence(partitions)
        if self._slow_restore:
            delay, self._slow_restore = self._slow_restore, 0.0
            await asyncio.sleep(delay)
        opened: dict[int, PartitionStore] = {}
        warm = self.standby.release(set(partitions)) if self.standby is not None else {}
        if warm:
            log.info("taking over partitions %s from their standby copies", sorted(warm))
        self.stores.update(warm)
        for p in sorted(partitions):
            store = self.stores.get(p)
            if store is None:
                path = self._store_path(p)
                opened[p], wiped = await asyncio.to_thread(open_store, path, p, self.shared)
                if wiped:
                    log.warning(
                        "partition %d: local state unreadable (%s); reading it again", p, wiped
                    )
                self.stores[p] = opened[p]
            else:
                opened[p] = store
        progress = self.metrics.restore_progress
        done = await until_answered(
            restore,
            s.bootstrap_servers,
            self.changelogs,
            opened,
            s.partitions,
            s.isolation_level,
            s.ends_by_reading,
            progress,
        )
        for p, why in done.wiped.items():
            log.warning(
                "partition %d: local state not trusted (%s); read again from the start", p, why
            )
        log.info(
            "restored partitions %s in %.2fs: changelog records read %s",
            sorted(partitions), done.seconds, done.records,
        )  # fmt: skip
        self.metrics.restored(partitions, done.seconds)

    async def resume(self, partitions: set[int]) -> None:
        """`_resume`, with no batch beside it.

        Faust calls this from its recovery (`perform_seek`), which does not
        wait for the batch in hand, and the revocation handler that drains
        it does not always run first. A batch then read a store while the
        restore was rewriting it in its thread: seen on Tansu, once in 17
        runs of the scaling test beside a busy loop, RocksDB's `Already mutably
        borrowed` in the batch, and the restore finding the store ahead of
        the changelog (the batch's commit landing under it); the worker
        exited 1 and the lag stood still, as in CI's failure of that test in
        session 10. So the batch in hand finishes first, and batches,
        checkpoints and marker moves wait (`_recovering`) until the restore
        and the seek are done. The restore itself runs without the lock, so
        a revocation never waits for a whole restore.
        """
        async with self.batch_lock:
            self._resuming = True
        try:
            await self._resume(partitions)
        finally:
            self._resuming = False

    def _recovering(self) -> bool:
        """Whether Faust's rebalance, a resume, or a restore it started (cut off or not) runs."""
        restoring = self._restoring is not None and not self._restoring.done()
        return self.app.rebalancing or self._resuming or restoring

    async def _resume(self, partitions: set[int]) -> None:
        """Restore each assigned partition's state, then seek its input to the state's position.

        Called after each rebalance, instead of Faust's seek to the
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
        # A restore cut off by a new rebalance (Faust cancels this seek then)
        # goes on in its thread: let it finish before anything of it is
        # touched; what it did is checked again by the restore below.
        if self._restoring is not None and not self._restoring.done():
            await asyncio.wait({self._restoring})
        for p in set(self.stores) - partitions:
            self.stores.pop(p).close()  # a standby of it, if this worker is one, reopens it
        # Producers a cut-off restore fenced for an older assignment: fence again.
        self.writer.release(self.writer.partitions)
        self._restoring = asyncio.ensure_future(self.restore(partitions))
        await asyncio.shield(self._restoring)
        positions = {}
        for p in mine:
            raw = self.stores[p].accounts.get(position_key(p))
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
            # No checkpoint here: a revocation is often a broker outage or a
            # rebalance, when a question to the broker only delays the group;
            # the idle and periodic checkpoints keep the tail short anyway.
            self.owned -= mine
            self.sequencer.forget(mine)
            self.writer.release(mine)
            for partition in mine:
                self._seeks.pop(partition, None)
            # The stores stay open: a restore cut off by this rebalance may
            # still be writing them in its thread. The next `resume` closes
            # those no longer assigned, once that restore has finished.

    def _store_path(self, partition: int) -> Path:
        return self.slot.path / f"partition-{partition}"

    async def refresh_standbys(self) -> None:
        """Follow the partitions this worker is a standby for, from the group's assignment.

        For each partition, the `standby_replicas` members after its owner in
        member-id order keep a warm copy; every worker computes the same
        answer from the same description. A member that cannot tell its own
        id, or a broker that lists no members (Tansu), keeps none.
        """
        if self.standby is None:
            return
        s = self.settings
        me = _member_id(self.app)
        if me is None:
            return
        try:
            members = await asyncio.to_thread(
                group_members, s.bootstrap_servers, s.app_id, s.transactions_topic
            )
        except KafkaIOError:
            return
        if me not in members:
            return
        order = sorted(members)
        keep = set()
        for owner, held in members.items():
            at = order.index(owner)
            followers = [order[(at + j) % len(order)] for j in range(1, len(order))]
            if me in followers[: s.standby_replicas]:
                keep |= held
        async with self.batch_lock:
            keep -= set(self.stores)  # never a partition whose store is active here
            self.standby.follow(keep)

    async def _checkpoint(self, partitions: set[int]) -> None:
        """Record in each store where a restore would start now (call with no transaction open).

        The changelogs' ends, asked now, are past every record of ours that
        was committed, all of which are in the stores (written after each
        commit), and no record of ours is pending: nothing below them is
        missing from the stores. A failed question only leaves the older
        record, which is safe (a longer read).
        """
        stores = {p: self.stores[p] for p in partitions if p in self.stores}
        if not stores:
            return
        self._checkpointed = time.monotonic()
        self._unrecorded = False
        try:
            ends = await asyncio.to_thread(self.ends.ask, self.changelogs, sorted(stores))
        except KafkaIOError as exc:
            log.info("no checkpoint of the local state this time (%s)", exc)
            return
        for p, store in stores.items():
            store.checkpoint({table: ends[table][p] for table in TABLES})

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

    async def process(self, records: Sequence[Consumed]) -> None:
        async with self.batch_lock:
            if self._recovering():
                # From the start of a rebalance until the state is
                # recovered and the input sought (`_recovering`). Events
                # taken before a rebalance can reach the agent while the
                # state is still being recovered from the changelogs;
                # applying them then would let the recovery overwrite this
                # batch's writes with older values
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

    async def _process(self, records: Sequence[Consumed]) -> None:
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
            await self._past_skips(admitted)
            self.seconds["skips"] += time.perf_counter() - asked
        if admitted.markers_passed:
            self.markers_read += admitted.markers_passed
            self.metrics.holes.labels("marker_read").inc(admitted.markers_passed)
            topic = self.settings.transactions_topic
            for p, offset in admitted.passed.items():
                control_batches.seen.forget_below(topic, p, offset)
        if admitted.duplicates:
            log.info("dropped %d records delivered twice", admitted.duplicates)
        clock = time.perf_counter
        started = clock()
        outcome = apply_batch_to(
            admitted.records, self._tables_of, self.placement, self._forget_locked
        )
        applied = clock()
        try:
            self.writer.send_many(self.changelogs["accounts"], outcome.account_writes)
            self.writer.send_many(self.changelogs["deposits"], outcome.deposit_writes)
            self._report(outcome)
        except Fenced as exc:
            _stop("fenced: another worker owns this partition now (%s); stopping", exc)
        except WriteFailed as exc:
            _stop("a write of this batch was refused (%s); stopping", exc)
        sent = clock()
        positions = self._positions_after(outcome.last_offsets)
        await self._commit_transactions(positions, outcome)
        for p, position in positions.items():
            if position > outcome.last_offsets[p] + 1:
                self.sequencer.skip_to(p, position)
                control_batches.seen.forget_below(self.settings.transactions_topic, p, position)
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

    def _positions_after(self, last_offsets: dict[int, int]) -> dict[int, int]:
        """Each partition's next offset after this batch, past the markers read right after it.

        The commit marker that closes an input transaction usually comes in
        the same fetch as the transaction's last record (processor.control_batches
        noted it): the position goes past it now, in this batch's
        transaction, and the partition shows no lag once the batch commits.
        Before, a marker at a partition's end waited for an idle spell and a
        transaction of its own (`past_trailing_markers`): 0.4-0.8 s at the
        end of every catch-up and burst (measured, bench/README.md). Not for
        a partition waiting on a hole: its records past the hole are held
        back, uncommitted, and must be read again from the hole.
        """
        topic = self.settings.transactions_topic
        reach = control_batches.seen.reach
        waiting = self.sequencer.waiting
        positions = {}
        for p, last in last_offsets.items():
            positions[p] = last + 1 if p in waiting else reach(topic, p, last + 1)
            if positions[p] > last + 1:
                self.markers_read += 1
                self.metrics.holes.labels("marker_read").inc()
        return positions

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
            if self._recovering():
                return
            asked = {}
            known: dict[int, int] = {}
            for p in sorted(self.owned):
                expected = self.sequencer.expected.get(p)
                if expected is None or p in self.sequencer.waiting:
                    continue
                if now - self._last_records.get(p, 0.0) < quiet:
                    continue
                try:
                    highwater = consumer.highwater(TP(topic, p))
                    if highwater is None or highwater <= expected:
                        continue
                    read_to = await consumer.position(TP(topic, p))
                except (AssertionError, IllegalStateError):
                    # aiokafka: "Partition is not assigned". The group took it
                    # away while we asked (the position question yields to
                    # the consumer's thread); seen in CI's scaling test as a
                    # crash. The revocation handler runs next.
                    return
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

    async def checkpoint_when_idle(self) -> None:
        """After the last batch of a burst, record where a restore would start (then: nothing)."""
        if self._unrecorded and self._idle_since is not None:
            async with self.batch_lock:
                if not self._recovering():
                    await self._checkpoint(set(self.owned))

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

    def _tables_of(self, partition: int) -> tuple[Any, Any]:
        store = self.stores[partition]
        return store.accounts, store.deposits

    async def _commit_transactions(
        self, positions: dict[int, int], outcome: Outcome | None = None
    ) -> None:
        """Each partition's position record, its transaction committed, then its store; or stop.

        The local store is written only once the transaction has committed
        (state.store says why), in one write with the position record.
        """
        topic = self.changelogs["accounts"]
        records = {}
        for p, next_offset in positions.items():
            records[p] = (topic, position_key(p), encode_position(next_offset))
        if self.settings.fault_local_first == "1" and outcome is not None and self.batches >= 3:
            # Test hook: the local store ahead of a transaction that never commits.
            self._store_batch(records, outcome)
            log.warning("fault: batch stored locally, exiting before its commit")
            os._exit(1)
        try:
            await self.writer.commit(records)
        except Fenced as exc:
            # A worker that froze past its session timeout (SIGSTOP, a VM
            # pause, a network cut) finds its partitions owned by another.
            _stop("fenced: another worker owns this partition now (%s); stopping", exc)
        except WriteFailed as exc:
            _stop("the transaction of this batch was not committed (%s); stopping", exc)
        self._store_batch(records, outcome)
        self._unrecorded = True
        if time.monotonic() - self._checkpointed >= self.settings.checkpoint_interval:
            await self._checkpoint(set(self.owned))
            # Asked right after our own commit, the ends can stop short of
            # it: the broker writes a transaction's markers after the
            # commit returns, and under read_committed the end is the last
            # stable offset. Safe (a restore reads a little more), but a
            # burst's last batch would then be read again at every restart
            # (seen in test_local_state: thousands of records instead of a
            # few): record once more when idle.
            self._unrecorded = True

    def _store_batch(
        self, records: dict[int, tuple[str, bytes, bytes]], outcome: Outcome | None
    ) -> None:
        accounts: dict[int, list[tuple[int, bytes, bytes]]] = {p: [] for p in records}
        deposits: dict[int, list[tuple[int, bytes, bytes | None]]] = {p: [] for p in records}
        if outcome is not None:
            for write in outcome.account_writes:
                accounts[write[0]].append(write)
            for deposit in outcome.deposit_writes:
                deposits[deposit[0]].append(deposit)
        for p, (_topic, key, value) in records.items():
            self.stores[p].commit(accounts[p], deposits[p], (key, value))

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


def _member_id(app: Any) -> str | None:
    """This worker's member id in the group, or None before it joined.

    Read from aiokafka's coordinator inside Faust's consumer thread: Faust
    does not expose it. Pinned: faust-streaming 0.15.3, aiokafka 0.14.0.
    """
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", None)
    return member if isinstance(member, str) and member else None


def _source(record: Consumed) -> dict[str, Any]:
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

    @app.timer(2.0)  # type: ignore[untyped-decorator]
    async def refresh_standbys() -> None:
        await worker.refresh_standbys()

    @app.timer(settings.checkpoint_interval)  # type: ignore[untyped-decorator]
    async def checkpoint_when_idle() -> None:
        await worker.checkpoint_when_idle()

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
