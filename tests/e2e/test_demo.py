"""`make demo` runs `ledger-demo`: the full local stack, then nothing left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import demo_engines, require_kafka
from tests.helpers import REPO_ROOT, run

pytestmark = pytest.mark.kafka

SAMPLE = REPO_ROOT / "examples" / "transactions.csv"
DEMO = str(Path(sys.executable).parent / "ledger-demo")
_WHERE = re.compile(rb"demo: in (\S+): (\w+) broker on 127\.0\.0\.1:(\d+)")


def _leftovers(workdir: str, port: str) -> list[str]:
    """Processes still running in the demo's directory, or naming its broker port."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # The Kafka JVM names its config file, which lives in the demo's directory.
        if cwd.startswith(workdir) or workdir in cmdline or f"127.0.0.1:{port} " in cmdline + " ":
            found.append(f"{pid}: {cmdline}")
    return found


def _listening(port: str) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", int(port))) == 0


@pytest.fixture(params=demo_engines())
def engine(request: pytest.FixtureRequest) -> str:
    """`make demo` (tansu) and `make demo BROKER=kafka`."""
    if request.param == "kafka":
        require_kafka()
    return str(request.param)


def test_the_demo_prints_the_same_snapshot_as_process_csv_and_leaves_nothing_running(
    engine: str,
) -> None:
    done = subprocess.run([DEMO, "--broker", engine, str(SAMPLE)], capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == run(SAMPLE).stdout
    where = _WHERE.search(done.stderr)
    assert where, done.stderr
    assert where.group(2).decode() == engine
    workdir, port = where.group(1).decode(), where.group(3).decode()
    assert not Path(workdir).exists()
    assert _leftovers(workdir, port) == []
    assert not _listening(port)


def test_an_interrupted_demo_stops_everything_and_prints_no_snapshot(engine: str) -> None:
    proc = subprocess.Popen(
        [DEMO, "--broker", engine, str(SAMPLE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the workers are being started
    where = _WHERE.search(first)
    assert where, first
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert out == b""
    assert b"interrupted by SIGINT" in err
    workdir, port = where.group(1).decode(), where.group(3).decode()
    assert _leftovers(workdir, port) == []
    assert not _listening(port)
