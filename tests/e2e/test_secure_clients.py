"""Every client of ours over TLS, SASL/SCRAM and mutual TLS, on Apache Kafka (issue 14).

The broker has its PLAINTEXT listener (inter-broker traffic and this test's
own bookkeeping) and two more: SASL_SSL with SCRAM-SHA-512 users, and SSL
that requires a client certificate. The pipeline's processes - produce-csv,
the Faust worker (aiokafka) with its librdkafka writer, export-snapshot -
get only the secure listener's address and the KAFKA_* security variables
(kafkaio.security), so nothing of theirs can fall back to PLAINTEXT.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.workload import generate
from embedded.ports import free_port
from kafkaio import acls
from kafkaio.acls import READER_GROUP, ROLES
from kafkaio.admin import admin_client, partition_count
from kafkaio.errors import TopicMissing
from kafkaio.security import Security
from kafkaio.settings import Settings
from tests.helpers import run
from tests.pipeline import Pipeline, wait_until
from tests.tls import Pki, broker_config, make_pki

pytestmark = [pytest.mark.kafka]

PASSWORD = "s3cret-Sc4m-pa55word"
WRONG = "not-the-password"
SECURITY_VARS = (
    "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION",
    "KAFKA_SSL_KEY_LOCATION",
)  # fmt: skip


class SecureKafka:
    def __init__(self, broker: Any, pki: Pki, sasl_port: int, tls_port: int) -> None:
        self.broker, self.pki = broker, pki
        self.sasl = f"127.0.0.1:{sasl_port}"
        self.tls = f"127.0.0.1:{tls_port}"


#: SCRAM users: one with every role, and one per role for the least-privilege test.
USERS = {"ledger": PASSWORD, **{role: f"{role}-{PASSWORD}" for role in ROLES}}


@pytest.fixture
def secure_kafka(own_kafka: Callable[..., Any], tmp_path: Path) -> SecureKafka:
    pki = make_pki(tmp_path / "pki")
    sasl_port, tls_port = free_port(), free_port()
    broker = own_kafka(
        scram_users=USERS,
        secure_listeners={"SASL_SSL": sasl_port, "SSL": tls_port},
        config={
            **broker_config(pki),
            # ACLs on, nothing allowed without one. PLAINTEXT (inter-broker,
            # controller, and this test's own set-up) is the super user.
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": "User:ANONYMOUS",
        },
    )
    return SecureKafka(broker, pki, sasl_port, tls_port)


def _pipeline(
    secure: SecureKafka, tmp_path: Path, bootstrap: str, env: dict[str, str], name: str,
    grant_all_to: str | None = None,
) -> Pipeline:  # fmt: skip
    workdir = tmp_path / name
    workdir.mkdir()
    pipeline = Pipeline(bootstrap, workdir, name, partitions=4, engine="kafka")
    pipeline.extra_env.update(env)
    if grant_all_to is not None:
        for role in ROLES:
            _grant(secure, pipeline, role, grant_all_to)
    return pipeline


def _grant(secure: SecureKafka, pipeline: Pipeline, role: str, principal: str) -> None:
    """The role's ACLs (kafkaio.acls, as deploy/README.md lists them), as the super user."""
    # The pipeline's names (topics, app id); the super user's connection.
    env = {k: v for k, v in pipeline.env.items() if k not in SECURITY_VARS}
    settings = Settings.from_env(env)
    acls.create(admin_client(secure.broker.bootstrap), role, settings, principal)


def _exists(secure: SecureKafka, topic: str) -> bool:
    try:
        return partition_count(secure.broker.bootstrap, topic, timeout=0) > 0
    except TopicMissing:
        return False


def _sasl_env(
    secure: SecureKafka, user: str = "ledger", password: str | None = None
) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": USERS[user] if password is None else password,
        "KAFKA_SSL_CA_LOCATION": str(secure.pki.ca),
    }


def _end_to_end(pipeline: Pipeline, tmp_path: Path) -> None:
    csv = tmp_path / f"{pipeline.name}.csv"
    csv.write_text("".join(generate(5_000, 200, seed=14, dirty=True)))
    pipeline.start_worker()
    try:
        produced = pipeline.produce(csv)
        assert produced.returncode == 0, produced.stderr
        exported = pipeline.export(timeout=180)
        assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
        assert exported.stdout == run(csv).stdout
    finally:
        pipeline.close()


def test_the_pipeline_runs_end_to_end_over_sasl_ssl_with_scram_and_never_shows_the_password(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    pipeline = _pipeline(
        secure_kafka, tmp_path, secure_kafka.sasl, _sasl_env(secure_kafka), "sasl", "User:ledger"
    )
    _end_to_end(pipeline, tmp_path)
    # Nothing any process wrote shows the password: worker logs, tools' stderr.
    written = b"".join(p.read_bytes() for p in pipeline.workdir.rglob("*") if p.is_file())
    assert PASSWORD.encode() not in written


def test_the_pipeline_runs_end_to_end_over_mutual_tls(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    cert, key = secure_kafka.pki.client("ledger-worker")
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_LOCATION": str(secure_kafka.pki.ca),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(cert),
        "KAFKA_SSL_KEY_LOCATION": str(key),
    }
    principal = "User:CN=ledger-worker"  # Kafka's default: the certificate's whole DN
    pipeline = _pipeline(secure_kafka, tmp_path, secure_kafka.tls, env, "mtls", principal)
    _end_to_end(pipeline, tmp_path)


def test_the_tools_take_their_security_from_flags_alone(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:  # issue 14: "from the environment ... and flags"
    pipeline = _pipeline(
        secure_kafka, tmp_path, secure_kafka.sasl, _sasl_env(secure_kafka), "flags",
        grant_all_to="User:ledger",
    )  # fmt: skip
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # as `kubectl create secret --from-file` leaves it
    flags = (
        "--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
        "--sasl-username", "ledger", "--sasl-password-file", str(secret),
        "--ssl-ca-location", str(secure_kafka.pki.ca),
    )  # fmt: skip
    csv = tmp_path / "flags.csv"
    csv.write_text("".join(generate(2_000, 100, seed=16, dirty=True)))
    pipeline.start_worker()  # the worker: from its environment
    try:
        # The tools: no KAFKA_SECURITY_* or KAFKA_SASL_* in their environment.
        for variable in SECURITY_VARS:
            pipeline.extra_env.pop(variable, None)
        produced = pipeline.produce(csv, *flags)
        assert produced.returncode == 0, produced.stderr
        exported = pipeline.export(*flags, timeout=180)
        assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
        assert exported.stdout == run(csv).stdout
        status = pipeline.run("ledger-admin", "status", *flags)
        assert status.returncode == 0, status.stderr
        for output in (produced.stderr, exported.stderr, status.stdout, status.stderr):
            assert PASSWORD.encode() not in output
        # Without the flags the same tool cannot get in.
        refused = pipeline.run("ledger-admin", "status", timeout=120)
        assert refused.returncode == 2, refused.stderr
    finally:
        pipeline.close()


def test_a_wrong_password_is_refused_at_once_with_exit_2_and_a_clear_line(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    env = _sasl_env(secure_kafka, password=WRONG)
    pipeline = _pipeline(secure_kafka, tmp_path, secure_kafka.sasl, env, "wrong")
    csv = tmp_path / "few.csv"
    csv.write_text("type,client,tx,amount\ndeposit,1,1,1.0\n")
    produced = pipeline.produce(csv)
    assert produced.returncode == 2, produced.stderr
    assert b"refused the connection" in produced.stderr, produced.stderr
    assert b"Authentication failed" in produced.stderr, produced.stderr
    assert WRONG.encode() not in produced.stderr
    assert b"Traceback" not in produced.stderr
    # A worker with the wrong password does not start (and is not restarted
    # in a loop by its supervisor as if the broker were away): exit 78.
    worker = pipeline.start_worker()
    assert worker.wait(timeout=120) == 78, pipeline.logs()
    assert "refused the connection" in pipeline.logs()
    assert WRONG not in pipeline.logs()


def test_a_client_without_a_certificate_is_refused_by_the_mutual_tls_listener(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": str(secure_kafka.pki.ca)}
    pipeline = _pipeline(secure_kafka, tmp_path, secure_kafka.tls, env, "nocert")
    csv = tmp_path / "few.csv"
    csv.write_text("type,client,tx,amount\ndeposit,1,1,1.0\n")
    # TLS 1.3 refuses a missing certificate after the handshake, so the
    # client sees a dropped connection, not a refusal: it waits for a broker
    # (30 s) and exits 2. The same client with its certificate gets through
    # (test_the_pipeline_runs_end_to_end_over_mutual_tls).
    produced = pipeline.produce(csv)
    assert produced.returncode == 2, produced.stderr
    assert b"Traceback" not in produced.stderr
    listed = pipeline.run("ledger-admin", "status", timeout=120)
    assert listed.returncode == 2, listed.stderr
    assert b"Traceback" not in listed.stderr


def test_each_role_runs_the_pipeline_under_exactly_its_acls_and_no_more(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    pipeline = _pipeline(secure_kafka, tmp_path, secure_kafka.sasl, {}, "roles")
    for role in ROLES:
        _grant(secure_kafka, pipeline, role, f"User:{role}")
    csv = tmp_path / "roles.csv"
    csv.write_text("".join(generate(5_000, 200, seed=15, dirty=True)))
    try:
        pipeline.extra_env.update(_sasl_env(secure_kafka, "worker"))
        pipeline.start_worker()
        # The workers create the ledger's topics; the producer may not.
        topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
        wait_until(lambda: _exists(secure_kafka, topic), 60, f"the worker to create {topic}")
        pipeline.extra_env.update(_sasl_env(secure_kafka, "producer"))
        produced = pipeline.produce(csv)
        assert produced.returncode == 0, produced.stderr
        pipeline.extra_env.update(_sasl_env(secure_kafka, "exporter"))
        exported = pipeline.export(timeout=180)
        assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
        assert exported.stdout == run(csv).stdout

        # The producer's principal can publish rows, not balances.
        changelog = f"ledger-{pipeline.name}-accounts-changelog"
        producer = Producer(
            {**Security.from_env(_sasl_env(secure_kafka, "producer")).librdkafka(),
             "bootstrap.servers": secure_kafka.sasl, "message.timeout.ms": 10_000}
        )  # fmt: skip
        failures: list[Any] = []
        producer.produce(changelog, b"forged", b"1", on_delivery=lambda e, _m: failures.append(e))
        producer.flush(30)
        assert failures and failures[0] is not None
        assert failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failures
        # ... and the exporter's can read balances, not write them, and not
        # read a row of the input (it only lists its ends).
        pipeline.extra_env.update(_sasl_env(secure_kafka, "exporter"))
        again = pipeline.produce(csv, "--force")
        assert again.returncode == 2, again.stderr
        reader = Consumer(
            {**Security.from_env(_sasl_env(secure_kafka, "exporter")).librdkafka(),
             "bootstrap.servers": secure_kafka.sasl, "group.id": READER_GROUP,
             "enable.auto.commit": False}
        )  # fmt: skip
        try:
            reader.assign([TopicPartition(topic, 0, 0)])
            refused = None
            deadline = time.monotonic() + 30
            while refused is None and time.monotonic() < deadline:
                message = reader.poll(1.0)
                assert message is None or message.error() is not None, "the exporter read a row"
                if message is not None:
                    refused = message.error().code()
            assert refused == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
        finally:
            reader.close()
    finally:
        pipeline.close()
