"""`produce-csv`: validate CSV rows with the ledger core and publish them, keyed by client.

Keying by client id puts all rows of a client in one partition, in file order,
which is all the ordering the rules need (R18). Malformed rows are never
published: they are reported here, where the line number still means something.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import click
import orjson
from confluent_kafka import KafkaException, Producer

from kafkaio.admin import ensure_topic, wait_for_broker
from kafkaio.errors import KafkaIOError
from kafkaio.settings import Settings
from ledger import Reason, read_rows
from ledger.messages import to_message
from producers.progress import Progress
from runner.console import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    ErrorPolicy,
    RowReporter,
    buffered_stderr,
    signals_raise,
)
from runner.inputs import InputError, open_input


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
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
    """Sends well-formed rows; remembers the last line handed over and what failed."""

    def __init__(self, producer: Producer, topic: str, progress: Progress) -> None:
        self.producer = producer
        self.topic = topic
        self.progress = progress
        self.sent = 0
        self.last_line = 0
        self.failed: list[tuple[int, str]] = []

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append((orjson.loads(msg.value()).get("line", -1), str(err)))

    def publish(self, lines: Iterable[bytes], reporter: RowReporter) -> None:
        produce, poll, dumps = self.producer.produce, self.producer.poll, orjson.dumps
        for number, kind, client, tx, amount in read_rows(lines, reporter.malformed):
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

    def flush(self, timeout: float = 120.0) -> int:
        """Wait for every record to be acknowledged; return how many are still unacknowledged."""
        return int(self.producer.flush(timeout))


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
@click.option("--partitions", type=int, help="Used if the topic is created (LEDGER_PARTITIONS).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
def cli(
    path: str,
    on_error: str,
    bootstrap_servers: str | None,
    topic: str | None,
    partitions: int | None,
    progress: bool | None,
) -> None:
    """Publish the well-formed rows of PATH (or stdin for -) to the transactions topic."""
    err = buffered_stderr()
    try:
        settings = Settings.from_env(
            bootstrap_servers=bootstrap_servers, transactions_topic=topic, partitions=partitions
        )
        wait_for_broker(settings.bootstrap_servers, timeout=30)
        count = ensure_topic(
            settings.bootstrap_servers,
            settings.transactions_topic,
            settings.partitions,
            settings.replication_factor,
        )
    except KafkaIOError as exc:
        click.echo(f"produce-csv: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    reporter = RowReporter(ErrorPolicy(on_error), err)
    bar = Progress(enabled=sys.stderr.isatty() if progress is None else progress)
    publisher = Publisher(Producer(producer_config(settings)), settings.transactions_topic, bar)
    started = time.monotonic()
    exit_code, stopped = EXIT_OK, ""
    try:
        with signals_raise(), open_input(path) as lines:
            publisher.publish(lines, reporter)
    except InputError as exc:
        click.echo(f"produce-csv: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (CommandError, KafkaIOError) as exc:
        exit_code = getattr(exc, "exit_code", EXIT_USAGE)
        stopped = str(exc)
    finally:
        bar.close()
    # Stopping means "read no further", never "drop what was already sent".
    unacked = publisher.flush()
    seconds = time.monotonic() - started
    malformed = reporter.counts[Reason.MALFORMED]
    err.write(
        f"summary: rows={publisher.sent + malformed} sent={publisher.sent} "
        f"malformed={malformed} not_delivered={len(publisher.failed) + unacked} "
        f"topic={settings.transactions_topic} partitions={count} seconds={seconds:.2f}\n"
    )
    if publisher.failed or unacked:
        for line, why in sorted(publisher.failed)[:20]:
            err.write(f"produce-csv: not delivered: line {line}: {why}\n")
        err.write(f"produce-csv: {len(publisher.failed) + unacked} rows were NOT delivered\n")
        exit_code = exit_code or EXIT_ABORTED
    elif stopped:
        err.write(
            f"produce-csv: stopped ({stopped}); every row up to line "
            f"{publisher.last_line} was delivered\n"
        )
    err.flush()
    sys.exit(exit_code)


def main() -> None:
    cli(prog_name="produce-csv")
