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
- A worker whose broker goes away while Faust is still starting (declaring
  topics, joining the group) crashes inside Faust with a connection error
  (seen in the broker kill -9 test: NodeNotReadyError from a changelog's
  declare). Such a crash exits 75, not 1: its restart waits for the broker.
So an outage ends with no operator action, and exit 1 keeps meaning a bug.

Then, before Faust declares any topic, the worker checks the partition
counts of `transactions` and both changelogs against LEDGER_PARTITIONS and
refuses to start (exit 78) if one differs: a client's partition is murmur2
of its key modulo that count (SPEC M1), and a changelog partition holds the
state of the input partition with the same number, so any other count would
send events and state to the wrong places. Topics that do not exist yet are
created here, with the right count, before Faust subscribes: on Apache
Kafka a worker that subscribed to a missing `transactions` ignored it
("Ignoring missing topic") until its next metadata refresh, and stayed
unready with no partitions (measured: over 120 s) even after the topic was
created. Tansu hid that by creating topics on any metadata request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, ClassVar, NoReturn

import faust
from aiokafka import errors as aiokafka_errors

from kafkaio.admin import ensure_topic, partition_count, wait_for_broker
from kafkaio.errors import AccessRefused, BrokerUnavailable, TopicMissing
from kafkaio.settings import CHANGELOG_CONFIG, Settings
from processor.agent import EXIT_COMMIT_FAILED

log = logging.getLogger("ledger.worker")

#: Seconds between two "still waiting" lines while the broker is down.
REPORT_EVERY = 10.0
#: Exit code of a worker whose topics do not match its settings (sysexits' EX_CONFIG):
#: a restart cannot help; the settings or the topics must change.
EXIT_MISCONFIGURED = 78
TABLES = ("accounts", "deposits")


#: Exit code asking the supervisor for a restart: the agent's, for the same reason.
EXIT_RESTART = EXIT_COMMIT_FAILED
#: Errors that mean "the broker could not be reached", whatever Faust was doing.
BROKER_GONE: tuple[type[BaseException], ...] = (
    aiokafka_errors.KafkaConnectionError,
    aiokafka_errors.NodeNotReadyError,
    aiokafka_errors.RequestTimedOutError,
    aiokafka_errors.KafkaTimeoutError,
    aiokafka_errors.GroupCoordinatorNotAvailableError,
    BrokerUnavailable,
    ConnectionError,
)


class BrokerWaitingWorker(faust.Worker):
    """Faust's worker, whose first start waits for the broker and checks the topics' layout."""

    #: The worker's settings (set by processor.faust_app, which builds the app from them).
    settings: ClassVar[Settings | None] = None

    _start_error: BaseException | None = None

    async def on_first_start(self) -> None:
        try:
            await wait_for_the_broker(self.app)
        except AccessRefused as exc:
            # Wrong credentials or certificates: a restart cannot help.
            log.critical("refusing to start: %s", exc)
            logging.shutdown()
            os._exit(EXIT_MISCONFIGURED)
        if self.settings is not None:
            problem = await asyncio.to_thread(layout_problem, self.settings)
            if problem is not None:
                log.critical("refusing to start: %s", problem)
                logging.shutdown()
                os._exit(EXIT_MISCONFIGURED)
            await asyncio.to_thread(create_topics, self.settings)
        await super().on_first_start()

    async def start(self) -> None:
        try:
            await super().start()
        except Exception as exc:
            self._start_error = exc  # mode's exit path keeps only the exit code
            raise

    def execute_from_commandline(self) -> NoReturn:
        try:
            super().execute_from_commandline()
        except SystemExit as exc:
            code = exit_code(exc, self.crash_reason or self._start_error)
            if code == exc.code:
                raise
            raise SystemExit(code) from None


def exit_code(exc: SystemExit, known_cause: BaseException | None) -> int | str | None:
    """The code a worker leaving with `exc` exits with, its reason logged in one line.

    mode's `exiting()` turns an exception raised while the worker stops (not
    only while it starts) into a bare sys.exit(1) and prints nothing; that
    exception is `exc`'s context. Seen once in CI: a worker exited 1 without
    a line right after a clean broker shutdown closed its connections.
    Pinned: mode-streaming 0.7.1 (tests/unit/test_startup.py runs its `exiting()`).
    """
    if exc.code in (0, None):
        return exc.code
    cause = known_cause or exc.__context__
    if fetcher_race(cause):
        # aiokafka 0.14's fetched_records can raise KeyError(TopicPartition)
        # when a rebalance drops a partition in the middle of a fetch (seen
        # once in the zombie test on Tansu, CI). The state is transactional,
        # so a restart resumes exactly: exit to be restarted.
        log.critical("the consumer's fetcher crashed (%r); exiting %d", cause, EXIT_RESTART)
        code: int | str | None = EXIT_RESTART
    elif lost_the_broker(cause):
        log.critical("the broker went away (%r); exiting %d to be restarted", cause, EXIT_RESTART)
        code = EXIT_RESTART
    elif cause is not None:
        # One line, no traceback: stderr names the reason; a traceback, if
        # any, was logged where the error was caught.
        log.critical("the worker stopped on %r; exiting %s", cause, exc.code)
        code = exc.code
    else:
        return exc.code
    logging.shutdown()
    return code


def fetcher_race(error: BaseException | None) -> bool:
    """aiokafka's KeyError for a TopicPartition its fetcher no longer holds (see above)."""
    return (
        isinstance(error, KeyError)
        and bool(error.args)
        and type(error.args[0]).__name__ == "TopicPartition"
    )


def lost_the_broker(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says the broker could not be reached."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, BROKER_GONE):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def create_topics(settings: Settings) -> None:
    """The ledger's topics, created with the settings' layout where missing."""
    s = settings
    for topic in (s.transactions_topic, s.dlq_topic, s.rejected_topic):
        ensure_topic(s.bootstrap_servers, topic, s.partitions, s.replication_factor)
    for table in TABLES:
        ensure_topic(
            s.bootstrap_servers,
            s.changelog_topic(table),
            s.partitions,
            s.replication_factor,
            CHANGELOG_CONFIG,
        )


def layout_problem(settings: Settings) -> str | None:
    """What is wrong with the partition counts of the ledger's topics, or None."""
    expected = settings.partitions
    topics = [settings.transactions_topic, *(settings.changelog_topic(t) for t in TABLES)]
    for topic in topics:
        try:
            found = partition_count(settings.bootstrap_servers, topic, timeout=0)
        except TopicMissing:
            continue  # the worker creates it, with `expected` partitions
        if found != expected:
            return (
                f"topic {topic!r} has {found} partitions, LEDGER_PARTITIONS says {expected}; "
                "a client's partition depends on the count (SPEC M1): fix LEDGER_PARTITIONS, "
                "or move the data to a new layout with `ledger-admin rebuild --to-topic`"
            )
    return None


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
