"""One frozen settings object, built from the environment at each entry point.

Every field has an environment variable (`ENV` below) and a default; command
flags override the environment by passing keyword overrides to `from_env`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from kafkaio.errors import SettingsError
from kafkaio.security import Secret, Security

ENV = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "transactions_topic": "LEDGER_TRANSACTIONS_TOPIC",
    "dlq_topic": "LEDGER_DLQ_TOPIC",
    "rejected_topic": "LEDGER_REJECTED_TOPIC",
    "partitions": "LEDGER_PARTITIONS",
    "replication_factor": "LEDGER_REPLICATION_FACTOR",
    "app_id": "LEDGER_APP_ID",
    "session_timeout": "LEDGER_SESSION_TIMEOUT",
    "heartbeat_interval": "LEDGER_HEARTBEAT_INTERVAL",
    "request_timeout": "LEDGER_REQUEST_TIMEOUT",
    "batch_size": "LEDGER_BATCH_SIZE",
    "web_port": "LEDGER_WEB_PORT",
    "web_bind": "LEDGER_WEB_BIND",
    "log_level": "LEDGER_LOG_LEVEL",
    "rejects_log_level": "LEDGER_REJECTS_LOG_LEVEL",
    "fault_slow_recovery": "LEDGER_FAULT_SLOW_RECOVERY",
    "fault_unfenced": "LEDGER_FAULT_UNFENCED",
    "isolation_level": "LEDGER_ISOLATION_LEVEL",
    "ingest_topic": "LEDGER_INGEST_TOPIC",
    "end_offsets": "LEDGER_END_OFFSETS",
    "data_dir": "LEDGER_DATA_DIR",
    "state_cache_mb": "LEDGER_STATE_CACHE_MB",
    "state_write_buffer_mb": "LEDGER_STATE_WRITE_BUFFER_MB",
    "checkpoint_interval": "LEDGER_CHECKPOINT_INTERVAL",
    "fault_local_first": "LEDGER_FAULT_LOCAL_FIRST",
    "standby_replicas": "LEDGER_STANDBY_REPLICAS",
    "advertised_url": "LEDGER_ADVERTISED_URL",
    "api_token": "LEDGER_API_TOKEN",
    "producer_debug": "LEDGER_PRODUCER_DEBUG",
}

ISOLATION_LEVELS = ("read_committed", "read_uncommitted")
END_OFFSETS = ("listed", "read")


#: What Faust itself sets on a table's changelog (and nothing else: no retention).
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}
#: The ingestion journal (producers.journal): one record per input, the latest kept.
JOURNAL_CONFIG = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    transactions_topic: str = "transactions"
    dlq_topic: str = "transactions-dlq"
    rejected_topic: str = "transactions-rejected"
    #: Partitions of the transactions topic: the most worker replicas that can share the work.
    partitions: int = 8
    replication_factor: int = 1
    #: Faust app id: the consumer group and the prefix of the changelog topics.
    app_id: str = "ledger"
    #: Seconds. Group joins on the embedded broker wait about half of this.
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    #: Seconds a worker waits for any broker answer, fetches included; at
    #: least the session timeout. Tansu 0.6 sometimes never answers a fetch
    #: (a worker then idles until this expires and it fetches again), so
    #: runs on the embedded broker use a few seconds.
    request_timeout: float = 40.0
    #: Most events a worker applies between two commits.
    batch_size: int = 50_000
    web_port: int = 6066
    #: The address the worker's web server listens on. Loopback unless told:
    #: /metrics and /readyz say what the ledger holds and does. The container
    #: images set 0.0.0.0 (probes and scrapes reach the pod's address).
    web_bind: str = "127.0.0.1"
    log_level: str = "warning"
    #: Level of the `ledger.rejects` log (processor.logs); empty: `log_level`.
    rejects_log_level: str = ""
    #: Test hook, seconds: the worker's first restore of its local state is
    #: made this much slower, past the request timeout (processor.agent). Keep 0.
    fault_slow_recovery: float = 0.0
    #: Test hook: each worker process gets transactional ids of its own, so
    #: nothing fences a previous owner (what the zombie and network-cut
    #: tests must catch). Keep empty; "1" turns it on.
    fault_unfenced: str = ""
    #: How every reader of ours (worker, recovery, exporter, tools) reads:
    #: read_committed skips aborted transactions (docs/exactness.md). Only
    #: for a broker whose read_committed is broken: Tansu 0.6 leaves its
    #: last stable offset behind committed transactions (measured: a
    #: restarted worker's batches stayed invisible to read_committed readers
    #: for good), and serves aborted records anyway, so its clients read
    #: read_uncommitted (embedded.broker.client_env) and rely on the
    #: position and before-image rules instead.
    isolation_level: str = "read_committed"
    #: How a partition's end is found (kafkaio.admin.end_offsets): "listed"
    #: takes the broker's ListOffsets answer (Apache Kafka: the last stable
    #: offset for a read_committed reader; needs only Describe on the
    #: topic). "read" reads the last records to the partition's EOF, for a
    #: broker whose ListOffsets under-reports: Tansu 0.6 answers the base
    #: offset of the last record batch + 1 (embedded.broker.client_env).
    end_offsets: str = "listed"
    #: Where a worker keeps its partitions' state (state.store, one RocksDB per
    #: partition), in a slot of its own (state.slots): a volume per replica
    #: in production, so that a restart reads only the changelogs' tails.
    data_dir: str = "ledger-data"
    #: RocksDB block cache for all of a worker's stores, MiB (memtables are charged to it).
    state_cache_mb: int = 64
    #: RocksDB write buffers (memtables) for all of a worker's stores, MiB.
    state_write_buffer_mb: int = 32
    #: Seconds between two records of where a restore would start (state.store
    #: `checkpoint`): at most this much changelog is read again after a crash.
    checkpoint_interval: float = 1.0
    #: Warm copies of each partition kept by other workers (state.standby),
    #: from the changelogs: the worker that takes a partition over reads only
    #: the last records. Needs a broker that lists group members (Kafka).
    standby_replicas: int = 1
    #: librdkafka `debug` contexts for the worker's transactional producers
    #: (processor.writer), e.g. "eos,protocol": every transactional request
    #: and its round trip, on the worker's stderr. Empty: off. For finding
    #: where a batch's transactions spend their time (bench/txn_anatomy.py).
    producer_debug: str = ""
    #: Test hook: a batch is written to the local store BEFORE its transaction
    #: commits, and the process then dies without committing: a store ahead
    #: of its changelog, which the restore must catch. Keep empty; "1" turns it on.
    fault_local_first: str = ""
    #: How other workers reach this one's web server (the balance API forwards
    #: a request to the owner of its client's partition). Empty: the bind
    #: address and port when the bind address is a specific one (tests, a
    #: single host), else the address this host's name resolves to. In
    #: Kubernetes: the pod's DNS name under the StatefulSet's headless Service.
    advertised_url: str = ""
    #: When set, the balance API asks every caller for `Authorization: Bearer
    #: <token>`. Never logged (a Secret). /metrics and the probes stay open.
    api_token: Secret | None = None
    #: produce-csv's ingestion journal (producers.journal); empty: `<transactions topic>-ingest`.
    ingest_topic: str = ""
    #: How clients authenticate and encrypt (kafkaio.security: its own KAFKA_* variables).
    security: Security = field(default_factory=Security)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the environment, then non-None keyword overrides (flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        values["security"] = Security.from_env(env)
        for f in fields(cls):
            if f.name not in ENV:
                continue
            raw = env.get(ENV[f.name])
            if raw is None or raw == "":
                continue
            if f.name == "api_token":
                values[f.name] = Secret(raw)
                continue
            values[f.name] = _convert(f.name, ENV[f.name], raw, type(getattr(cls, f.name)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.partitions < 1:
            raise SettingsError(f"partitions must be >= 1, got {self.partitions}")
        if self.batch_size < 1:
            raise SettingsError(f"batch size must be >= 1, got {self.batch_size}")
        if self.request_timeout < self.session_timeout:
            raise SettingsError(
                f"request timeout ({self.request_timeout}s) must be at least the session "
                f"timeout ({self.session_timeout}s)"
            )
        if self.isolation_level not in ISOLATION_LEVELS:
            raise SettingsError(
                f"LEDGER_ISOLATION_LEVEL must be one of {', '.join(ISOLATION_LEVELS)}, "
                f"got {self.isolation_level!r}"
            )
        if self.end_offsets not in END_OFFSETS:
            raise SettingsError(
                f"LEDGER_END_OFFSETS must be one of {', '.join(END_OFFSETS)}, "
                f"got {self.end_offsets!r}"
            )
        if not re.fullmatch(r"[a-z]*(,[a-z]+)*", self.producer_debug):
            raise SettingsError(
                f"LEDGER_PRODUCER_DEBUG: librdkafka debug contexts, comma-separated "
                f"(eos,protocol), got {self.producer_debug!r}"
            )
        if not self.bootstrap_servers:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is empty")
        if self.state_cache_mb < 8 or self.state_write_buffer_mb < 4:
            raise SettingsError(
                "LEDGER_STATE_CACHE_MB must be >= 8 and LEDGER_STATE_WRITE_BUFFER_MB >= 4"
            )

    @property
    def web_url(self) -> str:
        """This worker's web server as other workers reach it (`advertised_url`)."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = self.web_bind
        if host in ("", "0.0.0.0", "::"):
            # Listening everywhere (a container): the address this host's
            # name resolves to, which its peers reach (compose, a pod).
            try:
                host = socket.gethostbyname(socket.gethostname())
            except OSError:
                host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.web_port}"

    @property
    def ends_by_reading(self) -> bool:
        """Whether partition ends are read to the EOF (`end_offsets`: "read"), not listed."""
        return self.end_offsets == "read"

    def changelog_topic(self, table: str) -> str:
        """Faust names a table's changelog `<app id>-<table>-changelog`."""
        return f"{self.app_id}-{table}-changelog"

    @property
    def journal_topic(self) -> str:
        return self.ingest_topic or f"{self.transactions_topic}-ingest"

    @property
    def broker_url(self) -> str:
        """The bootstrap list in Faust's URL form."""
        return ";".join(f"kafka://{host}" for host in self.bootstrap_servers.split(","))


def _convert(name: str, var: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {kind.__name__} ({name})") from None
