"""`local-broker`, run as a user runs it: both engines, and Kafka's log kept across starts.

Through the real console script (a subprocess): the `bootstrap:` line, Ctrl-C
(SIGINT) stops it, `--data-dir` keeps Apache Kafka's log and port between
starts, and the options that belong to one engine are refused for the other.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from kafkaio.admin import read_to_end
from tests.conftest import require_kafka

pytestmark = pytest.mark.kafka

LOCAL_BROKER = str(Path(sys.executable).parent / "local-broker")


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [LOCAL_BROKER, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # printed once the broker answers
    assert line.startswith("bootstrap: 127.0.0.1:"), (line, proc.stderr and proc.stderr.read())
    return proc, line.split()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0


def test_the_kafka_engine_keeps_its_log_and_port_in_a_data_dir(tmp_path: Path) -> None:
    require_kafka()
    data = tmp_path / "kafka-data"
    first, bootstrap = _start("--engine", "kafka", "--data-dir", str(data))
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce("kept", b"still here", b"k")
    assert producer.flush(30) == 0
    _stop(first)

    again, bootstrap_again = _start("--engine", "kafka", "--data-dir", str(data))
    try:
        assert bootstrap_again == bootstrap  # clients keep their address
        assert [m.value() for m in read_to_end(bootstrap_again, "kept", 1)] == [b"still here"]
    finally:
        _stop(again)


def test_the_default_engine_is_tansu_and_stops_on_ctrl_c() -> None:
    proc, bootstrap = _start()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("t", b"v")
    assert producer.flush(30) == 0
    _stop(proc)


@pytest.mark.parametrize("args", [["--data-dir", "x"], ["--prepare"]])
def test_kafka_only_options_are_refused_for_tansu(args: list[str]) -> None:
    done = subprocess.run([LOCAL_BROKER, *args], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"--engine kafka" in done.stderr
