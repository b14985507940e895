"""The Faust app: `faust -A processor worker` runs it.

Settings come from the environment once, here at the entry point. Building
the app connects to nothing; the worker does that when it starts.
"""

from __future__ import annotations

import faust

from kafkaio.security import Security
from kafkaio.settings import Settings
from processor.agent import install
from processor.api import install_api
from processor.assignment import assignor
from processor.control_batches import install as note_control_batches
from processor.logs import configure_rejects_log
from processor.membership_lease import install as keep_membership_lease
from processor.producer_metadata import keep_known_topics_on_add
from processor.stampede_patch import install as shield_stampede_waiters
from processor.startup import BrokerWaitingWorker
from processor.transport import ReadCommittedConsumerThread
from processor.web import install_web, no_tracebacks


def create_app(settings: Settings) -> faust.App:
    # Before any aiokafka client exists: without it the producer can forget the
    # changelog topics when it first sends a rejection, and a batch then waits
    # forever in producer.flush() (see processor.producer_metadata).
    keep_known_topics_on_add()
    # Before the worker starts: a cancelled waiter must not break topic creation.
    shield_stampede_waiters()
    note_control_batches()
    # The balance API's owners answer only within their membership lease.
    keep_membership_lease()
    # Sent to the group with each join: every worker learns every other's
    # URL from the assignment (processor.api forwards with it).
    assignor.url = settings.web_url
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        # No Faust tables: the state is state.store's (processor.agent).
        store="memory://",
        # Rebalances survive timeouts and outages, and the state's restore is
        # not cut off by the request timeout (processor.recovery).
        TableManager="processor.recovery:PatientTableManager",
        # Waits for the broker at start instead of exiting 1 (processor.startup).
        Worker="processor.startup:BrokerWaitingWorker",
        # Values are bytes we encode ourselves (processor.state): one format in
        # the tables, the changelogs and the exporter, and no float anywhere.
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        # A group join on the embedded broker waits about half the session
        # timeout (shared/notes: 60 s -> ~31 s, 10 s -> 6.5 s).
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_request_timeout=settings.request_timeout,
        # The agent commits itself, synchronously, after every batch (see
        # processor.agent); Faust's own timer-driven commit would only add
        # commits of offsets the agent has already committed.
        broker_commit_interval=3600.0,
        broker_commit_every=1_000_000_000,
        producer_linger=0.05,
        # One fetch is one batch (processor.transport): as many records as
        # the agent applies between two commits.
        broker_max_poll_records=settings.batch_size,
        # Up to 8 MiB per partition per fetch response (Faust's default: 1
        # MiB, ~13k records here): one response then covers a whole batch,
        # so the agent rarely waits for the next one. Measured, 1 worker, 1M
        # events: time waiting for fetches 2.2 s -> 0.2 s.
        consumer_max_fetch_size=8 * 1024**2,
        # Faust's aiokafka clients (consumer, producer, admin) authenticate
        # and encrypt as every librdkafka client of ours (kafkaio.security).
        broker_credentials=credentials(settings.security),
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,
        canonical_url=settings.web_url,
        # Only our endpoints (processor.web). Faust's built-ins would show
        # table contents (/table), route requests to other replicas
        # (/router), and expose internals (/graph, /stats, /performance).
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        # An error inside a view answers a bare 500, never a traceback page.
        web_application_options={"middlewares": [no_tracebacks]},
    )
    if settings.web_port == 0:
        # LEDGER_WEB_PORT=0: no web server, so several workers fit on one host.
        # `web_enabled=False` is not enough: `faust worker` sets it back to True
        # unless given --without-web, and a second worker then dies on the port.
        app.boot_strategy.enable_web = False
    ReadCommittedConsumerThread.isolation_level = settings.isolation_level
    BrokerWaitingWorker.settings = settings
    configure_rejects_log(settings)
    worker = install(app, settings)
    # /metrics, /livez, /readyz on the web server (processor.web); with the
    # web server off they are registered but never served.
    install_web(app, worker)
    install_api(app, worker)
    return app


def credentials(security: Security) -> faust.types.auth.CredentialsT | None:
    """Faust's form of kafkaio.security's settings (aiokafka takes an SSLContext)."""
    if security.uses_sasl:
        assert security.sasl_password is not None  # Security.validate
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password.reveal(),
            ssl_context=security.ssl_context(),  # None: SASL_PLAINTEXT
            mechanism=security.sasl_mechanism,
        )
    context = security.ssl_context()
    return faust.SSLCredentials(context) if context is not None else None


app = create_app(Settings.from_env())
