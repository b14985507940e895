"""`ledger-demo CSV`: the whole product on one machine, then nothing left running.

Starts a broker on a free port (the embedded Tansu by default, Apache Kafka
with `--broker kafka`), two worker replicas, publishes the CSV with
produce-csv, prints `export-snapshot --wait`'s snapshot on stdout.
Every child runs in its own session, so a Ctrl-C reaches only this process,
which then stops them in order (tools, workers, broker) and exits 128+signal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from embedded.broker import ENGINES, client_env, running_broker
from kafkaio.admin import wait_for_broker
from kafkaio.errors import KafkaIOError
from runner.console import Interrupted, run_console_script, signals_ignored, signals_raise

BIN = Path(sys.executable).parent
WORKERS = 2


def _say(message: str) -> None:
    click.echo(f"demo: {message}", err=True)


class Stack:
    def __init__(self, workdir: Path, bootstrap: str, engine: str = "tansu") -> None:
        self.workdir = workdir
        self.env = dict(os.environ)
        self.env.update(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LEDGER_PARTITIONS="4",
            # Fast group joins (shared notes: on Tansu the join waits about
            # half the session timeout; the Kafka launcher accepts 4 s).
            LEDGER_SESSION_TIMEOUT="4",
            LEDGER_HEARTBEAT_INTERVAL="0.5",
            # Tansu sometimes leaves a fetch unanswered: retry it after 5 s.
            # Kafka answers: keep a timeout that a busy machine never hits.
            LEDGER_REQUEST_TIMEOUT="5" if engine == "tansu" else "30",
            LEDGER_WEB_PORT="0",
        )
        self.env.update(client_env(engine))
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, n: int) -> None:
        with open(self.workdir / f"worker-{n}.log", "wb") as log:
            self.workers.append(
                subprocess.Popen(
                    [BIN / "faust", "-A", "processor", "worker", "-l", "warn"],
                    env=self.env,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def run(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [BIN / args[0], *args[1:]],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else sys.stderr,
            start_new_session=True,
            check=False,
        )

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace")[-2000:] for p in self.workdir.glob("*.log"))


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ledger-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(stack: Stack, csv: Path, timeout: float) -> bytes:
    for n in range(WORKERS):
        stack.start_worker(n)
    # The workers create the topic as they start, maybe not yet: this is the same layout.
    produced = stack.run("produce-csv", str(csv.resolve()), "--create-topic")
    if produced.returncode != 0:
        raise click.ClickException(f"produce-csv exited {produced.returncode}")
    _say("waiting for the workers to apply everything")
    exported = stack.run("export-snapshot", "--wait", "--timeout", str(timeout), capture=True)
    if exported.returncode != 0:
        _say("worker logs:\n" + stack.worker_logs())
        raise click.ClickException(f"export-snapshot exited {exported.returncode}")
    return exported.stdout


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, default=300.0, show_default=True, help="For the export.")
@click.option(
    "--broker",
    "engine",
    type=click.Choice(ENGINES),
    default="tansu",
    show_default=True,
    help="tansu: embedded, in memory. kafka: Apache Kafka from its Maven Central jars.",
)
def cli(csv: Path, timeout: float, engine: str) -> None:
    """Run broker + 2 workers + produce-csv + export-snapshot --wait on CSV."""
    try:
        with (
            signals_raise(),
            _workdir() as workdir,
            running_broker(
                log=workdir / "broker.log",
                engine=engine,
                # Kafka's log lives in the demo's directory: removed with it.
                data_dir=workdir / "kafka-data" if engine == "kafka" else None,
            ) as broker,
        ):
            wait_for_broker(broker.bootstrap)
            stack = Stack(workdir, broker.bootstrap, engine)
            _say(f"in {workdir}: {engine} broker on {broker.bootstrap}; starting {WORKERS} workers")
            try:
                snapshot = _run(stack, csv, timeout)
            finally:
                # A second Ctrl-C must not cut the clean-up short.
                with signals_ignored():
                    _say("stopping workers and broker")
                    stack.stop_workers()
                    broker.stop()
    except Interrupted as exc:
        _say(f"{exc}; stopped everything, no snapshot")
        sys.exit(exc.exit_code)
    except KafkaIOError as exc:  # no Java for --broker kafka, a broker that would not start
        _say(f"cannot run the {engine} broker: {exc}")
        sys.exit(2)
    with signals_ignored():
        sys.stdout.buffer.write(snapshot)
        sys.stdout.flush()


def main() -> None:
    run_console_script(cli, "ledger-demo")
