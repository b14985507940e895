"""`produce-csv`: validate CSV rows with the ledger core and publish them, keyed by client.

Keying by client id puts all rows of a client in one partition, in file order,
which is all the ordering the rules need (R18). Malformed rows are never
published: they are reported here, where the line number still means something.

A file (and standard input with `--source-id`) is journaled
(producers.journal): rows go out in Kafka transactions that also record how
far the publication got, so a re-run resumes after the last committed line,
and a file published completely is refused unless `--force`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kafkaio.admin import ensure_topic, partition_count, wait_for_broker
from kafkaio.errors import BrokerUnavailable, KafkaIOError, TopicMissing
from kafkaio.security import client_config
from kafkaio.settings import JOURNAL_CONFIG, Settings
from ledger import Reason, read_rows
from ledger.lines import Lines
from ledger.messages import to_message
from producers.journal import (
    Action,
    Entry,
    argument_text,
    file_key,
    plan,
    read_journal,
    source_key,
    transactional_id,
)
from producers.progress import Progress
from runner.console import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    ErrorPolicy,
    RowReporter,
    buffered_stderr,
    run_console_script,
    signals_raise,
)
from runner.inputs import InputError, open_input, read_chunks
from runner.kafka_options import kafka_security_options

#: Nothing was published: the journal says this input was published completely
#: (or an unfinished publication of an edited file under the same name exists).
EXIT_REFUSED = 3
#: A transaction the broker aborts by itself if produce-csv goes silent this
#: long (ms): killed -9, the next run of the same input aborts it at once anyway.
TRANSACTION_TIMEOUT_MS = 60_000
#: Seconds produce-csv keeps asking for the journal while the broker is away.
JOURNAL_PATIENCE = 120.0


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **client_config(settings.bootstrap_servers, settings.security),
        # No loss, no duplicates from retries: idempotence implies acks=all and
        # bounded in-flight requests, so per-partition order survives retries.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        # The Java client's partitioner, so every client agrees where a key lives.
        "partitioner": "murmur2_random",
        # Only failures come back as delivery reports: a Python callback for
        # every row would cost more than producing the row.
        "delivery.report.only.error": True,
    }


class Publisher:
    """Sends well-formed rows; remembers the last line handed over and what failed.

    `skip`: lines already published by an earlier run (the journal's), not sent
    again nor reported. `checkpoint(line)`, if given, is called at least
    `interval` seconds apart, right after a row is handed over: every line up
    to `line` is then decided.
    """

    def __init__(
        self,
        producer: Producer,
        topic: str,
        progress: Progress,
        skip: int = 0,
        checkpoint: Callable[[int], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.progress = progress
        self.skip = skip
        self.checkpoint = checkpoint
        self.interval = interval
        self.sent = 0
        self.last_line = skip
        #: Lines read, once the input is read to its end.
        self.lines = 0
        self.failed: list[tuple[int, str]] = []

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append((orjson.loads(msg.value()).get("line", -1), str(err)))

    def publish(self, chunks: Iterable[bytes], reporter: RowReporter) -> None:
        """Send the well-formed rows of the input's bytes, `chunks` (cut anywhere)."""
        produce, poll, dumps = self.producer.produce, self.producer.poll, orjson.dumps
        # Counted: the journal counts lines, not rows.
        lines, skip, checkpoint = Lines(chunks), self.skip, self.checkpoint

        def after_skip(number: int, detail: str) -> None:
            if number > skip:  # lines up to `skip` were reported by the run that got that far
                reporter.malformed(number, detail)

        malformed: Callable[[int, str], None] = after_skip if skip else reporter.malformed

        clock, due = time.monotonic, time.monotonic() + self.interval
        for number, kind, client, tx, amount in read_rows(lines, malformed):
            if number <= skip:
                continue
            value = dumps(to_message(kind, client, tx, amount, number))
            while True:
                try:
                    produce(self.topic, value, str(client).encode(), on_delivery=self.on_delivery)
                    break
                except BufferError:
                    poll(0.1)  # the local queue is full: let the broker catch up
                except KafkaException as exc:
                    raise KafkaIOError(f"cannot produce line {number}: {exc}") from exc
            self.last_line = number
            self.sent += 1
            if self.sent % 20_000 == 0:
                poll(0)
                self.progress.update(self.sent, reporter.counts[Reason.MALFORMED])
            if checkpoint is not None and clock() >= due:
                checkpoint(number)
                due = clock() + self.interval
        self.lines = lines.count

    def flush(self, timeout: float = 120.0) -> int:
        """Wait for every record to be acknowledged; return how many are still unacknowledged."""
        return int(self.producer.flush(timeout))


class Journal:
    """The transactions of one journaled publication (producers.journal says why)."""

    def __init__(
        self,
        producer: Producer,
        settings: Settings,
        partitions: int,
        entry: Entry,
        reporter: RowReporter,
    ) -> None:
        self.producer = producer
        self.topic = settings.journal_topic
        self.input_topic = settings.transactions_topic
        self.entry = entry
        self.reporter = reporter
        self.publisher: Publisher | None = None
        #: Rows and malformed lines of earlier invocations of this run.
        self.rows_before, self.malformed_before = entry.rows, entry.malformed
        self._ends = Consumer(
            {
                **client_config(settings.bootstrap_servers, settings.security),
                "group.id": "produce-csv",
            }
        )
        self.partitions = partitions

    def ends(self, patience: float = 0.0) -> dict[int, int]:
        """Each partition's high watermark: past every row this run has had acknowledged.

        With `patience`, asked again while the broker is away, for up to that
        many seconds: at start-up, as reading the journal is (seen in the
        broker kill test: a broker killed right then ended the run with a
        traceback), and at a checkpoint, as its commit is (seen in CI's
        broker kill test: a broker killed between a checkpoint's flush and
        this question stopped the run with exit 2, "Broker handle destroyed").
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                ends = {}
                for p in range(self.partitions):
                    _low, high = self._ends.get_watermark_offsets(
                        TopicPartition(self.input_topic, p), timeout=10, cached=False
                    )
                    ends[p] = int(high)
                return ends
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(
                        f"no partition ends of {self.input_topic!r}: {exc.args[0].str()}"
                    ) from None
                time.sleep(1.0)

    def begin(self) -> None:
        _call(self.producer.begin_transaction)

    def checkpoint(self, lines: int, complete: bool = False) -> None:
        """Everything sent so far and the entry saying so: one transaction, committed.

        The rows are acknowledged first (flush), so the entry's offsets are
        known; then the entry goes out last in the same transaction.
        """
        assert self.publisher is not None
        self.publisher.flush()
        if self.publisher.failed:
            raise KafkaIOError(f"{len(self.publisher.failed)} rows were refused by the broker")
        entry = self.entry.progressed(
            lines,
            self.rows_before + self.publisher.sent,
            self.malformed_before + self.reporter.counts[Reason.MALFORMED],
            self.ends(JOURNAL_PATIENCE),
        )
        entry = replace(entry, complete=complete)
        _call(self.producer.produce, self.topic, entry.encode(), entry.source.encode())
        _call(self.producer.commit_transaction, JOURNAL_PATIENCE)
        self.entry = entry
        if not complete:
            self.begin()

    def abort(self) -> None:
        # Fenced or gone: the broker aborts it anyway (its timeout, or the next run).
        with contextlib.suppress(KafkaException):
            self.producer.abort_transaction(30)

    def close(self) -> None:
        self._ends.close()


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            raise KafkaIOError(
                "another produce-csv of this input took over (its transactional id "
                "fenced this one); nothing more was published from here"
            ) from exc
        raise KafkaIOError(f"transaction failed: {error.str()}") from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", metavar="PATH|-")
@click.option(
    "--on-error",
    type=click.Choice([p.value for p in ErrorPolicy]),
    default=ErrorPolicy.SKIP.value,
    show_default=True,
    help="What to do with malformed rows (they are never published).",
)
@click.option("--bootstrap-servers", help="Overrides KAFKA_BOOTSTRAP_SERVERS.")
@click.option("--topic", help="Overrides LEDGER_TRANSACTIONS_TOPIC.")
@kafka_security_options
@click.option(
    "--create-topic",
    is_flag=True,
    help="Create the topic if it does not exist (the workers create it when they start); "
    "without this flag a missing topic is an error (exit 2).",
)
@click.option(
    "--partitions", type=int, help="Of the topic --create-topic creates (LEDGER_PARTITIONS)."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@click.option(
    "--force",
    is_flag=True,
    help="Publish an input the journal says was published completely, again (every row "
    "applies again).",
)
@click.option(
    "--source-id",
    help="Journal standard input under this id: a re-run with the same id resumes after the "
    "last line published. Without it, standard input is not journaled.",
)
@click.option(
    "--commit-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between the journal's transactions: rows become visible to the workers "
    "when theirs commits.",
)
def cli(
    path: str,
    on_error: str,
    bootstrap_servers: str | None,
    topic: str | None,
    create_topic: bool,
    partitions: int | None,
    progress: bool | None,
    force: bool,
    source_id: str | None,
    commit_interval: float,
) -> None:
    """Publish the well-formed rows of PATH (or stdin for -) to the transactions topic."""
    err = buffered_stderr()
    try:
        settings = Settings.from_env(
            bootstrap_servers=bootstrap_servers, transactions_topic=topic, partitions=partitions
        )
        key = _journal_key(path, source_id, err)
        wait_for_broker(settings.bootstrap_servers, timeout=30)
        # Fencing earlier runs of this input takes a round of the transaction
        # coordinator (0.5 s measured): under way while the topics are checked.
        # Not before the broker answers: exiting waits for this thread.
        fencing = None if key is None else _start_fencing(settings, key)
        count = input_topic(settings, create_topic, err)
        if key is not None:
            ensure_topic(
                settings.bootstrap_servers,
                settings.journal_topic,
                1,
                settings.replication_factor,
                JOURNAL_CONFIG,
            )
    except (KafkaIOError, InputError) as exc:
        click.echo(f"produce-csv: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    reporter = RowReporter(ErrorPolicy(on_error), err)
    bar = Progress(enabled=sys.stderr.isatty() if progress is None else progress)
    journal: Journal | None = None
    if key is None:
        producer = Producer(producer_config(settings))
        publisher = Publisher(producer, settings.transactions_topic, bar)
    else:
        assert fencing is not None
        try:
            journal = _open_journal(settings, count, key, fencing, path, force, reporter, err)
        except KafkaIOError as exc:
            click.echo(f"produce-csv: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        publisher = Publisher(
            journal.producer,
            settings.transactions_topic,
            bar,
            skip=journal.entry.lines,
            checkpoint=journal.checkpoint,
            interval=commit_interval,
        )
        journal.publisher = publisher
    started = time.monotonic()
    exit_code, stopped = EXIT_OK, ""
    try:
        with signals_raise(), open_input(path) as stream:
            publisher.publish(read_chunks(stream), reporter)
            if journal is not None:
                journal.checkpoint(publisher.lines, complete=True)
    except InputError as exc:
        if journal is not None:
            journal.abort()
        click.echo(f"produce-csv: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (CommandError, KafkaIOError) as exc:
        exit_code = getattr(exc, "exit_code", EXIT_USAGE)
        stopped = str(exc)
        if journal is not None:
            exit_code = _stop_journal(journal, publisher, exc, exit_code)
    finally:
        bar.close()
    # Stopping means "read no further", never "drop what was already sent".
    unacked = publisher.flush()
    if journal is not None:
        journal.close()
    seconds = time.monotonic() - started
    malformed = reporter.counts[Reason.MALFORMED]
    err.write(
        f"summary: rows={publisher.sent + malformed} sent={publisher.sent} "
        f"malformed={malformed} not_delivered={len(publisher.failed) + unacked} "
        f"topic={settings.transactions_topic} partitions={count} seconds={seconds:.2f}\n"
    )
    if journal is not None and journal.entry.lines < publisher.last_line:
        # A transaction was not committed: its rows are invisible to the workers.
        err.write(
            f"produce-csv: stopped ({stopped}); published up to line {journal.entry.lines}, "
            f"nothing after it; run the same command again to resume\n"
        )
        exit_code = exit_code or EXIT_ABORTED
    elif publisher.failed or unacked:
        for line, why in sorted(publisher.failed)[:20]:
            err.write(f"produce-csv: not delivered: line {line}: {why}\n")
        err.write(f"produce-csv: {len(publisher.failed) + unacked} rows were NOT delivered\n")
        exit_code = exit_code or EXIT_ABORTED
    elif stopped:
        resume = "; run the same command again to resume" if journal is not None else ""
        err.write(
            f"produce-csv: stopped ({stopped}); every row up to line "
            f"{publisher.last_line} was delivered{resume}\n"
        )
    err.flush()
    sys.exit(exit_code)


def input_topic(settings: Settings, create: bool, err: Any) -> int:
    """The input topic's partition count; created only when asked (`--create-topic`).

    Creating whatever topic was named turned a typo (`--topic trasnactions`)
    into a new topic holding the whole file, which no worker reads, and an
    exit 0. The journal topic is another matter: it is produce-csv's own,
    and created without asking.
    """
    topic = settings.transactions_topic
    try:
        # No wait for a topic that is not there when it is to be created anyway.
        return partition_count(settings.bootstrap_servers, topic, timeout=0 if create else 2)
    except TopicMissing:
        if not create:
            raise TopicMissing(
                f"no topic {topic!r}: is LEDGER_TRANSACTIONS_TOPIC (or --topic) right? The "
                "workers create it when they start; --create-topic creates it here"
            ) from None
    count = ensure_topic(
        settings.bootstrap_servers, topic, settings.partitions, settings.replication_factor
    )
    err.write(f"produce-csv: created topic {topic!r} with {count} partitions\n")
    err.flush()
    return count


def _journal_key(path: str, source_id: str | None, err: Any) -> str | None:
    if path == "-":
        if source_id is None:
            err.write(
                "produce-csv: standard input without --source-id is not journaled: "
                "a re-run publishes every row again\n"
            )
            return None
        return source_key(source_id)
    if source_id is not None:
        raise InputError("--source-id is for standard input (-); a file is known by its content")
    try:
        return file_key(Path(path))
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror or exc}") from exc


class _Fencing:
    """The input's transactional producer, initialising on a thread of its own."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fencing")
        self._done = self._pool.submit(_call, producer.init_transactions, JOURNAL_PATIENCE)

    def wait(self) -> Producer:
        try:
            self._done.result()  # re-raises its KafkaIOError
        finally:
            self._pool.shutdown()
        return self.producer


def _start_fencing(settings: Settings, key: str) -> _Fencing:
    config = {
        **producer_config(settings),
        "transactional.id": transactional_id(settings.transactions_topic, key),
        "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
    }
    return _Fencing(Producer(config))


def _open_journal(
    settings: Settings,
    partitions: int,
    key: str,
    fencing: _Fencing,
    path: str,
    force: bool,
    reporter: RowReporter,
    err: Any,
) -> Journal:
    """Fence any earlier run of this input, read the journal, and decide; exit 3 to refuse."""
    # Aborts whatever transaction a killed run of this input left open, and
    # fences that run if it is still alive, before the journal is read.
    producer = fencing.wait()
    entries = _read_journal_patiently(settings)
    name = "-" if path == "-" else argument_text(path)
    decision = plan(key, name, entries, force)
    if decision.action is Action.REFUSE:
        err.write(f"produce-csv: {decision.message}\n")
        err.flush()
        sys.exit(EXIT_REFUSED)
    journal = Journal(producer, settings, partitions, decision.entry, reporter)
    if decision.action is Action.PUBLISH:
        starts = journal.ends(JOURNAL_PATIENCE)
        journal.entry = replace(
            decision.entry, offsets={p: [end, end] for p, end in starts.items()}
        )
    else:
        err.write(
            f"produce-csv: resumed after line {decision.skip} ({decision.entry.rows} rows "
            f"published before){decision.message}\n"
        )
    journal.begin()
    return journal


def _read_journal_patiently(settings: Settings) -> dict[str, Entry]:
    """The journal, asked again while the broker is away (up to JOURNAL_PATIENCE seconds).

    A broker restart during start-up must not fail the run: once publishing,
    the client rides out an outage of up to two minutes (`flush`); reading
    the journal gets the same patience.
    """
    deadline = time.monotonic() + JOURNAL_PATIENCE
    while True:
        try:
            return read_journal(
                settings.bootstrap_servers, settings.journal_topic, settings.isolation_level
            )
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _stop_journal(journal: Journal, publisher: Publisher, exc: Exception, exit_code: int) -> int:
    """Interrupted or aborted: commit what was sent, if the transaction can still commit."""
    if isinstance(exc, KafkaIOError):
        journal.abort()
        return exit_code or EXIT_ABORTED
    try:
        journal.checkpoint(publisher.last_line)
        journal.abort()  # the empty transaction begun after the checkpoint
    except KafkaIOError:
        journal.abort()
        return exit_code or EXIT_ABORTED
    return exit_code


def main() -> None:
    run_console_script(cli, "produce-csv")
