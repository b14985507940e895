"""Free TCP ports on 127.0.0.1, and broker processes, for tests, benches and demos."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; racy only against other pickers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_broker(argv: list[str], log: Path | None) -> subprocess.Popen[bytes]:
    """Start a broker process, its output appended to `log` (or dropped), in its own session.

    Its own session: a Ctrl-C meant for us is not also delivered to it, so
    the caller stops it in order. The parent's copy of the log file is
    closed at once (the child has its own), so restarts leak no handles.
    """
    out = open(log, "ab") if log else None  # noqa: SIM115
    try:
        return subprocess.Popen(
            argv,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
