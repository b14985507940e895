"""Free TCP ports on 127.0.0.1, for brokers and workers started by tests, benches and demos."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; racy only against other pickers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
