"""A real Apache Kafka broker (KRaft, one node) from its jars on Maven Central, without Docker.

The broker is Kafka's own `kafka.Kafka` main class run with `java` on a
classpath that Maven resolves from `org.apache.kafka:kafka_2.13`. The jars
are cached outside the clone (`LEDGER_KAFKA_CACHE`, default
`~/.cache/kafka-ledger`) and fetched once, by `local-broker --engine kafka
--prepare` (make and CI run it) or on first use. Only Maven Central is asked.

`KAFKA_VERSION` is the one pin: compose.yaml's `apache/kafka` image is tested
to carry the same version (tests/integration/test_deploy_files.py).

One node is broker and controller at once (combined mode), on 127.0.0.1,
with free ports unless told otherwise. A data directory that was formatted
before is started again as it is: the log, the committed offsets and the
ports survive, which is what the broker-fault tests need.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from embedded.ports import free_port, spawn_broker
from kafkaio.errors import BrokerUnavailable

#: The Apache Kafka release every launcher, test and image of this project uses.
KAFKA_VERSION = "4.1.1"
#: Kafka's published POM leaves out the log4j2 binding its release tarball
#: adds; this is the log4j2 version Kafka 4.1.1 builds with
#: (gradle/dependencies.gradle). Without it the broker logs nothing.
LOG4J2_VERSION = "2.24.3"
SCALA_VERSION = "2.13"
#: Kafka 4 brokers need Java 17 or later.
MIN_JAVA = 17

#: Written into a data directory: the ports and cluster id of the broker that owns it.
STATE_FILE = "ledger-broker.json"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>kafka-broker-libs</artifactId>
  <version>0</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

#: Warnings and errors only, plus the "started" line, on stderr (the launcher's log file).
_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDERR
      target: SYSTEM_ERR
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDERR
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""

#: What a one-node broker needs, beyond the listeners and the log directory.
BASE_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "inter.broker.listener.name": "PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
    "num.partitions": "1",
    # One node: internal topics with more replicas than brokers are never
    # created, and the group and transaction coordinators never come up.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # A local broker: the first group joins at once, small internal topics,
    # and a log cleaner that does not reserve 128 MiB of heap.
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024**2),
    # Tests and the demo use a 4 s session timeout for fast group joins;
    # Kafka refuses sessions under 6 s by default (InvalidSessionTimeout).
    # Production brokers keep their default; the workers' default is 10 s.
    "group.min.session.timeout.ms": "1000",
}

JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def cache_dir() -> Path:
    env = os.environ.get("LEDGER_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-ledger"


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}" / "libs"


def jars_cached(version: str = KAFKA_VERSION) -> bool:
    # The marker is written last: a fetch killed halfway leaves no marker.
    return (libs_dir(version) / ".complete").exists()


def java_major() -> int | None:
    """The major version of the `java` on PATH, or None without one."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if found is None:
        return None
    major = int(found.group(1))
    # Java 8 and older print "1.8.0_..."
    return int(found.group(2) or 0) if major == 1 else major


def unavailable_reason() -> str | None:
    """Why a Kafka broker cannot run on this machine, or None if it can.

    The one place that decides it: the test fixtures skip (or, under CI,
    fail) on this reason, and `local-broker --engine kafka` prints it.
    """
    major = java_major()
    if major is None:
        return "no `java` on PATH (Apache Kafka needs Java 17+)"
    if major < MIN_JAVA:
        return f"java {major} on PATH; Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+"
    if not jars_cached() and shutil.which("mvn") is None:
        return (
            f"the Kafka {KAFKA_VERSION} jars are not cached in {libs_dir()} "
            "and there is no `mvn` to fetch them"
        )
    return None


def fetch_jars(version: str = KAFKA_VERSION, log: IO[str] | None = None) -> Path:
    """Resolve the broker's runtime classpath from Maven Central into the cache, once."""
    target = libs_dir(version)
    if jars_cached(version):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(f"cannot fetch the Kafka {version} jars: no `mvn` on PATH")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if log is not None:
        print(f"fetching Apache Kafka {version} jars from Maven Central into {target}", file=log)
    with tempfile.TemporaryDirectory(dir=root, prefix="fetch-") as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=version, log4j=LOG4J2_VERSION))
        staged = Path(work) / "libs"
        done = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                f"-Dmaven.repo.local={root / 'm2'}",
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staged}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if done.returncode != 0 or not list(staged.glob("kafka_*.jar")):
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise BrokerUnavailable(
                f"maven could not fetch the Kafka {version} jars:\n" + "\n".join(tail)
            )
        (staged / ".complete").write_text(version + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a fetch killed before its marker: start over
            shutil.rmtree(target)
        staged.rename(target)
    return target


def new_cluster_id() -> str:
    """22 characters of URL-safe base64 of 16 random bytes, as `kafka-storage random-uuid`."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # the storage tool would read it as an option
            return cid


class KafkaBroker:
    """One Apache Kafka process (broker + controller) on 127.0.0.1, owning `data_dir`.

    `start` formats a new data directory, or starts on an existing one as
    it is; `stop` is a clean shutdown, `kill` a SIGKILL. Both can be
    followed by `start` again: same ports, same log. `config` adds or
    overrides broker properties (listeners for SASL/TLS, for example).
    """

    engine = "kafka"

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        log: Path | None = None,
        config: Mapping[str, str] | None = None,
        scram_users: Mapping[str, str] | None = None,
        extra_listeners: Mapping[str, tuple[int, str]] | None = None,
        secure_listeners: Mapping[str, int] | None = None,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kafka-ledger-broker-"))
        self.log = log
        self.extra_config = dict(config or {})
        #: name -> password, SCRAM-SHA-512 credentials written at format time.
        self.scram_users = dict(scram_users or {})
        #: name -> (port on 127.0.0.1, advertised host:port): more PLAINTEXT
        #: listeners, e.g. one reached through a relay (tests/netcut.py).
        self.extra_listeners = dict(extra_listeners or {})
        #: SSL / SASL_SSL / SASL_PLAINTEXT -> port on 127.0.0.1: listeners of
        #: that name and protocol, beside PLAINTEXT (which stays the
        #: inter-broker and tooling listener); `config` sets their TLS and SASL.
        self.secure_listeners = dict(secure_listeners or {})
        state = self._read_state()
        self.port: int = port or int(state.get("port", 0)) or free_port()
        self.controller_port: int = int(state.get("controller_port", 0)) or free_port()
        self.cluster_id: str = str(state.get("cluster_id", "")) or new_cluster_id()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _read_state(self) -> dict[str, int | str]:
        path = self.data_dir / STATE_FILE
        if not path.exists():
            return {}
        state: dict[str, int | str] = json.loads(path.read_text())
        return state

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "log" / "meta.properties").exists()

    def properties(self) -> dict[str, str]:
        c = self.controller_port
        props = dict(BASE_CONFIG)
        extra = self.extra_listeners
        secure = {name: (port, f"127.0.0.1:{port}") for name, port in self.secure_listeners.items()}
        bind = "".join(
            f",{name}://127.0.0.1:{port}" for name, (port, _) in {**extra, **secure}.items()
        )
        advertised = "".join(
            f",{name}://{where}" for name, (_, where) in {**extra, **secure}.items()
        )
        protocols = "".join(f",{name}:PLAINTEXT" for name in extra)
        props.update(
            {
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{c}",
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{c}" + bind,
                "advertised.listeners": (
                    f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{c}" + advertised
                ),
                "listener.security.protocol.map": (
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
                    "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL" + protocols
                ),
                "log.dirs": str(self.data_dir / "log"),
            }
        )
        props.update(self.extra_config)
        return props

    def _write_config(self) -> Path:
        conf = self.data_dir / "config"
        conf.mkdir(parents=True, exist_ok=True)
        server = conf / "server.properties"
        server.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (conf / "log4j2.yaml").write_text(_LOG4J2)
        (self.data_dir / STATE_FILE).write_text(
            json.dumps(
                {
                    "port": self.port,
                    "controller_port": self.controller_port,
                    "cluster_id": self.cluster_id,
                    "version": KAFKA_VERSION,
                }
            )
        )
        return server

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        log4j = f"-Dlog4j2.configurationFile={self.data_dir / 'config' / 'log4j2.yaml'}"
        return [java, *JVM_OPTIONS, log4j, "-cp", f"{libs_dir()}/*", main, *args]

    def _format(self, server: Path) -> None:
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            self.cluster_id,
            "-c",
            str(server),
        )
        for name, password in self.scram_users.items():
            command += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerUnavailable(f"kafka storage format failed: {done.stderr.strip()[-2000:]}")

    def start(self, timeout: float = 90.0) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise BrokerUnavailable(reason)
        fetch_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = self._write_config()
        if not self.formatted:
            self._format(server)
        self.process = spawn_broker(self._java("kafka.Kafka", str(server)), self.log)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready when a metadata request is answered with this broker in it."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        assert self.process is not None
        # log_level 0: no "connection refused" lines while the JVM starts up.
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "log_level": 0, **self.client_config()}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"kafka exited with {self.process.returncode} while starting"
                    + (f" (log: {self.log})" if self.log else "")
                )
            try:
                if admin.list_topics(timeout=1.0).brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.1)
        self.kill()
        raise BrokerUnavailable(f"kafka did not answer on {self.bootstrap} in {timeout:.0f}s")

    def client_config(self) -> dict[str, str]:
        """Extra client settings the default listener needs (none for PLAINTEXT)."""
        return {}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (SIGTERM: Kafka closes its logs); SIGKILL after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the process dies at once; what it had written stays in the page cache."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def remove(self) -> None:
        """Stop, and delete the data directory if this broker made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()


@contextlib.contextmanager
def running_kafka(
    port: int | None = None, data_dir: Path | None = None, log: Path | None = None
) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(port, data_dir, log)
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()
