"""Prometheus metrics of one worker, served on `/metrics` by Faust's web server.

prometheus-client is the maintained Python client of the Prometheus project:
the exposition format comes from it (`generate_latest`), never hand-written.
Each worker has its own CollectorRegistry, not the library's global one, so
several apps in one process (tests) never share or double-register series,
and a scrape shows only the ledger's series.

The agent tells this object two things and nothing else: a batch was
committed (`batch_done`) and which offsets it committed (`record_commit`).
Lag is computed when scraped (`lag_source`), so an idle or stuck worker still
reports fresh figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Content type of the text exposition format that `generate_latest` writes
#: (UTF-8, the format's default; aiohttp refuses a charset in this argument).
CONTENT_TYPE = "text/plain; version=0.0.4"

#: Seconds per batch, from the batch reaching the agent to its commit. A
#: batch holds up to LEDGER_BATCH_SIZE events (10k by default, ~1 s at 11k
#: events/s), so the buckets reach well past a second.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Returns {partition: records not yet committed} for the partitions this
#: worker owns right now; partitions whose end is not known yet are left out.
LagSource = Callable[[], Mapping[int, int]]


@dataclass(frozen=True)
class Status:
    """What a scrape reports about the worker as a whole (processor.web builds it)."""

    ready: bool
    owned: int
    #: Standby copies kept here: partition -> changelog records not yet read.
    standby_lag: Mapping[int, int]


StatusSource = Callable[[], Status]
#: Seconds per API request; forwarded ones include the hop to the owner.
API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: A reason name: str, or ledger.Reason (a StrEnum).
R = TypeVar("R", bound=str)


class WorkerMetrics:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.registry = CollectorRegistry(auto_describe=True)
        self.applied = Counter(
            "ledger_events_applied",
            "Events the rules accepted and applied to the tables.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "ledger_events_rejected",
            "Well-formed events the rules refused, by reason (sent to the rejected topic).",
            ["reason"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "ledger_events_dead_lettered",
            "Undecodable or malformed messages sent to the dead-letter topic.",
            registry=self.registry,
        )
        self.changelog = Counter(
            "ledger_changelog_records_written",
            "Changelog records written, by table (one per touched key per batch).",
            ["table"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "ledger_batch_duration_seconds",
            "Seconds to apply, write, confirm and commit one batch.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batches = Counter(
            "ledger_batches_committed", "Batches committed.", registry=self.registry
        )
        self.holes = Counter(
            "ledger_input_holes",
            "Offsets missing from the input's sequence, by how they were resolved: "
            "`marker_read` (a transaction marker the consumer read) or `asked` (the "
            "broker was asked what is there).",
            ["resolved"],
            registry=self.registry,
        )
        self.restored_records = Counter(
            "ledger_state_restored_records",
            "Changelog records read into the local state (state.restore), by input partition: "
            "after a restart on the same disk, only the changelogs' tails.",
            ["partition"],
            registry=self.registry,
        )
        self.restore_remaining = Gauge(
            "ledger_state_restore_remaining_records",
            "Changelog records the running restore of a partition has still to read (0 when done).",
            ["partition"],
            registry=self.registry,
        )
        self.restore_seconds = Gauge(
            "ledger_state_restore_seconds",
            "Seconds the last restore took (every partition assigned in that rebalance).",
            registry=self.registry,
        )
        self.last_commit = Gauge(
            "ledger_partition_last_commit_timestamp_seconds",
            "Unix time of this worker's last commit of an owned partition's input offset "
            "(alert: lag above 0 and no commit for minutes).",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "ledger_api_requests",
            "Balance API requests answered, by route (account, deposit) and HTTP status.",
            ["route", "code"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "ledger_api_request_duration_seconds",
            "Seconds to answer a balance API request, by route and by who answered it: "
            "`owner` (this worker's own state), `forwarded` (another replica's), "
            "`standby` (this worker's standby copy, ?stale=ok).",
            ["route", "via"],
            buckets=API_BUCKETS,
            registry=self.registry,
        )
        #: Set by processor.web; None: no status series.
        self.status_source: StatusSource | None = None
        self.registry.register(_StatusCollector(self))
        #: partition -> records counted into `restored_records` by the running restore.
        self._restoring: dict[int, int] = {}
        #: partition -> records the running restore has still to read.
        self._remaining: dict[int, int] = {}
        #: partition -> the offset this worker committed last (the next to read).
        self.committed: dict[int, int] = {}
        #: Set by whoever knows the consumer (processor.web); None: no lag series.
        self.lag_source: LagSource | None = None
        self.registry.register(_LagCollector(self))

    def batch_done(
        self,
        applied: int,
        reasons: Mapping[R, int],
        dead_lettered: int,
        changelog: Mapping[str, int],
        seconds: float,
    ) -> None:
        """One committed batch: what it applied, refused and wrote, and how long it took."""
        self.applied.inc(applied)
        for reason, n in reasons.items():
            self.rejected.labels(reason=str(reason)).inc(n)  # a StrEnum prints its value
        self.dead_lettered.inc(dead_lettered)
        for table, n in changelog.items():
            self.changelog.labels(table=table).inc(n)
        self.batch_seconds.observe(seconds)
        self.batches.inc()

    def restore_progress(self, partition: int, read: int, total: int) -> None:
        """Called from the restore's thread as it goes (prometheus_client is thread-safe)."""
        label = str(partition)
        self.restored_records.labels(label).inc(read - self._restoring.get(partition, 0))
        self._restoring[partition] = read
        self._remaining[partition] = max(0, total - read)
        self.restore_remaining.labels(label).set(self._remaining[partition])

    def restoring(self) -> dict[str, int]:
        """The running restore's records still to read, by partition (empty when none runs)."""
        remaining = dict(self._remaining)  # written by the restore thread
        return {str(p): n for p, n in sorted(remaining.items())}

    def restored(self, partitions: set[int], seconds: float) -> None:
        for partition in partitions:
            # A series per partition restored, even when nothing was read.
            self.restored_records.labels(str(partition)).inc(0)
            self.restore_remaining.labels(str(partition)).set(0)
        self._restoring.clear()
        self._remaining.clear()
        self.restore_seconds.set(seconds)

    def record_commit(self, offsets: Mapping[int, int]) -> None:
        """The offsets (next to read, per partition) the agent has just committed."""
        self.committed.update(offsets)
        now = time.time()
        for partition in offsets:
            self.last_commit.labels(self.topic, str(partition)).set(now)

    def forget(self, partitions: set[int]) -> None:
        """Partitions given away: their commits are another worker's now."""
        for partition in partitions:
            self.committed.pop(partition, None)
            with contextlib.suppress(KeyError):  # never committed here
                self.last_commit.remove(self.topic, str(partition))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LagCollector(Collector):
    """Consumer lag per owned partition, read at scrape time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        # Without this the registry would call collect() at registration,
        # before any consumer exists.
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        source = self.metrics.lag_source
        if source is not None:
            for partition, lag in sorted(source().items()):
                family.add_metric([self.metrics.topic, str(partition)], lag)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ledger_consumer_lag",
            "Records in an owned partition not yet committed (highwater - committed offset).",
            labels=["topic", "partition"],
        )


class _StatusCollector(Collector):
    """Readiness, partitions owned and standby lag, read at scrape time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready, owned, standby = self._families()
        source = self.metrics.status_source
        if source is not None:
            status = source()
            ready.add_metric([], 1.0 if status.ready else 0.0)
            owned.add_metric([], status.owned)
            for partition, lag in sorted(status.standby_lag.items()):
                standby.add_metric([str(partition)], lag)
        yield from (ready, owned, standby)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "ledger_ready", "1 when /readyz answers 200 (owns partitions, none restoring)."
            ),
            GaugeMetricFamily(
                "ledger_owned_partitions", "Input partitions this worker owns and processes."
            ),
            GaugeMetricFamily(
                "ledger_standby_lag_records",
                "Changelog records a standby copy kept here has not read yet, by input partition.",
                labels=["partition"],
            ),
        )
