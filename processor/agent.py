"""The agent: decode -> ledger core -> tables, one batch at a time, then commit.

Per batch: apply (processor.batch, pure), store and send the coalesced table
writes, send rejections and dead letters, wait until the broker has
acknowledged all of it, then commit the batch's source offsets and wait for
that too. The next batch writes nothing before the commit succeeded, so at
most one batch per partition is ever written but uncommitted: the property
docs/exactness.md builds on. A failed commit stops the worker at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import faust
import orjson
from faust.types import TP

from kafkaio.settings import Settings
from processor.batch import Outcome, Record, apply_batch

log = logging.getLogger("ledger.worker")

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
        self.source = app.topic(
            settings.transactions_topic, partitions=settings.partitions, internal=True
        )
        self.applied = 0
        #: partition -> last offset applied by this process (see apply_batch).
        self.positions: dict[int, int] = {}

    async def process(self, records: Sequence[Record]) -> None:
        outcome = apply_batch(records, self.accounts.data, self.deposits.data, self.positions)
        if outcome.duplicates:
            log.warning("skipped %d records delivered twice", outcome.duplicates)
        for partition, position, offset in outcome.gaps:
            log.warning("offsets jump on partition %d: %d -> %d", partition, position, offset)
        self._write(self.accounts, outcome.account_writes)
        self._write(self.deposits, outcome.deposit_writes)
        await self._report(outcome)
        # Everything this batch sent is acknowledged before its input is committed.
        await self.app.producer.flush()
        await self._commit(outcome.last_offsets)
        self.applied += outcome.applied

    @staticmethod
    def _write(table: Any, writes: list[tuple[int, bytes, bytes]]) -> None:
        store, send = table.data, table.send_changelog
        for partition, key, value in writes:
            store[key] = value
            # The changelog partition is the source partition: the table is
            # co-partitioned with `transactions`, so recovery finds a client's
            # state where its events are.
            send(partition, key, value)

    async def _report(self, outcome: Outcome) -> None:
        producer = self.app.producer
        for record, rejection in outcome.rejected:
            rejection["source"] = _source(record)
            log.debug("rejected %s", rejection)
            await producer.send(
                self.settings.rejected_topic,
                record.key,
                orjson.dumps(rejection),
                partition=None,
                timestamp=None,
                headers=None,
            )
        for record, detail in outcome.dead:
            log.warning(
                "dead-letter topic=%s partition=%d offset=%d reason=malformed detail=%s",
                record.topic,
                record.partition,
                record.offset,
                detail,
            )
            headers = [
                ("reason", b"malformed"),
                ("detail", detail.encode()),
                ("source", orjson.dumps(_source(record))),
            ]
            # The value goes on unchanged, so a fixed consumer can replay it.
            await producer.send(
                self.settings.dlq_topic,
                record.key,
                record.value,
                partition=None,
                timestamp=None,
                headers=headers,
            )

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
            log.critical("commit of %s failed (revoked: %s); stopping", offsets, revoked)
            logging.shutdown()
            os._exit(EXIT_COMMIT_FAILED)


def _source(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def install(app: faust.App, settings: Settings) -> BatchWorker:
    worker = BatchWorker(app, settings)

    @app.agent(worker.source, name="apply-transactions")
    async def apply_transactions(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            records = [
                Record(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            await worker.process(records)

    @app.task  # type: ignore[untyped-decorator]
    async def quiet_root_logger() -> None:
        # The worker's start-up leaves the root logger at DEBUG even at -l warn,
        # so hot-path debug calls build records that are thrown away (~10%).
        logging.getLogger().setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))

    return worker
