"""Drive the real pipeline from tests: real console scripts, real worker processes.

Each `Pipeline` gets its own topics and app id, so tests never share state on
the (shared, session-wide) broker.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedded.broker import client_env, free_port

BIN = Path(sys.executable).parent
#: Exit code of a worker that must be restarted (processor.agent.EXIT_COMMIT_FAILED).
EXIT_RESTART = 75
#: Group joins on the embedded broker wait about half the session timeout.
TEST_SESSION_TIMEOUT = "4"
TEST_HEARTBEAT = "0.5"
#: Seconds a worker waits for a broker answer. Tansu sometimes leaves a fetch
#: unanswered until this expires, so its runs use a few seconds; on Apache
#: Kafka a short timeout would only make slow answers fail on a busy machine.
REQUEST_TIMEOUT = {"tansu": "5", "kafka": "30", "external": "30"}


def script(name: str) -> str:
    return str(BIN / name)


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass
class Pipeline:
    bootstrap: str
    workdir: Path
    name: str
    partitions: int = 4
    #: tansu, kafka or external (tests/conftest.py)
    engine: str = "tansu"
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Extra environment of the workers started next, and of the tools.
    extra_env: dict[str, str] = field(default_factory=dict)
    #: pid -> the web port of a worker started with one (restarts keep it).
    web_ports: dict[int, int] = field(default_factory=dict)
    #: pid -> the cuttable link a worker was started behind (restarts keep it).
    links: dict[int, Any] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            LEDGER_APP_ID=f"ledger-{self.name}",
            LEDGER_TRANSACTIONS_TOPIC=f"tx-{self.name}",
            LEDGER_DLQ_TOPIC=f"tx-{self.name}-dlq",
            LEDGER_REJECTED_TOPIC=f"tx-{self.name}-rejected",
            LEDGER_PARTITIONS=str(self.partitions),
            LEDGER_SESSION_TIMEOUT=TEST_SESSION_TIMEOUT,
            LEDGER_HEARTBEAT_INTERVAL=TEST_HEARTBEAT,
            LEDGER_REQUEST_TIMEOUT=REQUEST_TIMEOUT[self.engine],
            LEDGER_WEB_PORT="0",
        )
        env.update(client_env(self.engine))
        env.update(self.extra_env)
        # Checking that a test fails without a fix: LEDGER_TEST_CODE=<a git
        # worktree of an older commit> runs that code in every process the
        # pipeline starts (workers, tools), while the test itself stays this one.
        if os.environ.get("LEDGER_TEST_CODE"):
            env["PYTHONPATH"] = os.environ["LEDGER_TEST_CODE"]
        return env

    def producer(self) -> Any:
        """A hand-driven producer that places keys as produce-csv does (SPEC M1: murmur2)."""
        from confluent_kafka import Producer

        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
            }
        )

    def end_offsets(self, topic: str, partitions: int | None = None) -> dict[int, int]:
        """The partition ends as our tools find them on this engine (settings `end_offsets`)."""
        from kafkaio.admin import end_offsets
        from kafkaio.settings import Settings

        settings = Settings.from_env(self.env)
        return end_offsets(
            self.bootstrap,
            topic,
            self.partitions if partitions is None else partitions,
            settings.isolation_level,
            by_reading=settings.ends_by_reading,
        )

    def create_topics(self) -> None:
        """The topics a worker creates as it starts (processor.startup), with no worker."""
        from kafkaio.settings import Settings
        from processor.startup import create_topics

        create_topics(Settings.from_env(self.env))

    def produce(self, csv: Path, *args: str) -> Result:
        # Tests publish before a worker (which creates the topic) has started, or just as it starts.
        return self._run("produce-csv", str(csv), "--no-progress", "--create-topic", *args)

    def export(self, *args: str, timeout: float = 180) -> Result:
        """`export-snapshot --wait`, while restarting workers that exit for a restart."""
        proc = subprocess.Popen(
            [script("export-snapshot"), "--wait", "--timeout", str(timeout), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout + 60
        while True:
            try:
                # communicate() keeps draining the pipes while we wait: a
                # snapshot is bigger than a pipe buffer.
                out, err = proc.communicate(timeout=0.5)
                if proc.returncode != 0:
                    self.dump_tasks()
                return Result(proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise
                self.supervise()

    def dump_tasks(self) -> None:
        """Ask every live worker for mode's task dump (SIGUSR1), into its log, for a post-mortem."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        time.sleep(2)

    def supervise(self) -> None:
        """Restart workers that exit with 75, as compose/Kubernetes would (restart on failure)."""
        for i, proc in enumerate(self.workers):
            if proc.poll() == EXIT_RESTART:
                web, link = self.web_ports.pop(proc.pid, None), self.links.pop(proc.pid, None)
                self.workers[i] = self._spawn(web, link)

    def start_worker(self, web: bool = False, link: Any = None) -> subprocess.Popen[bytes]:
        """A worker; with `web`, its web server on a free 127.0.0.1 port (`web_url`).

        With `link` (a tests.netcut.NetCut), the worker runs in the link's
        network namespace and reaches the broker only through it.
        """
        proc = self._spawn(free_port() if web else None, link)
        self.workers.append(proc)
        return proc

    def web_url(self, proc: subprocess.Popen[bytes], path: str) -> str:
        return f"http://127.0.0.1:{self.web_ports[proc.pid]}{path}"

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
        """Until the worker (started with `web`) answers /readyz with 200."""
        url = self.web_url(proc, "/readyz")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:  # not listening yet, or 503
                return False

        wait_until(ready, timeout, "the worker to be ready")

    def _spawn(self, web_port: int | None = None, link: Any = None) -> subprocess.Popen[bytes]:
        n = next(self._counter)
        log = open(self.workdir / f"worker-{n}.log", "wb")  # noqa: SIM115
        env = self.env
        if web_port is not None:
            env["LEDGER_WEB_PORT"] = str(web_port)
        # The web server binds 127.0.0.1 (LEDGER_WEB_BIND's default).
        argv = [script("faust"), "-A", "processor", "worker", "-l", "warn"]
        if link is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = link.bootstrap
            argv = link.command(argv)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.workdir,  # Faust keeps a data directory in its working directory
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        if web_port is not None:
            self.web_ports[proc.pid] = web_port
        if link is not None:
            self.links[proc.pid] = link
        return proc

    def stop_worker(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
    ) -> int:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.workdir.glob("worker-*.log"))
        )

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def run(self, name: str, *args: str, timeout: float = 300) -> Result:
        """A console script of ours with this pipeline's settings."""
        return self._run(name, *args, timeout=timeout)

    def _run(self, name: str, *args: str, timeout: float = 300) -> Result:
        done = subprocess.run(
            [script(name), *args], env=self.env, capture_output=True, timeout=timeout
        )
        return Result(done.returncode, done.stdout, done.stderr)


class PipelineFactory:
    def __init__(
        self, bootstrap: str, tmp_path: Path, test_name: str, engine: str = "tansu"
    ) -> None:
        self.bootstrap = bootstrap
        self.engine = engine
        self.tmp_path = tmp_path
        self.base = re.sub(r"[^A-Za-z0-9]+", "-", test_name)[:40].strip("-")
        self.pipelines: list[Pipeline] = []

    def new(self, partitions: int = 4) -> Pipeline:
        name = f"{self.base}-{uuid.uuid4().hex[:6]}"
        workdir = self.tmp_path / name
        workdir.mkdir()
        pipeline = Pipeline(self.bootstrap, workdir, name, partitions, self.engine)
        self.pipelines.append(pipeline)
        return pipeline

    def close(self) -> None:
        for pipeline in self.pipelines:
            pipeline.close()


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
