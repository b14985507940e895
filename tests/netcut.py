"""A network link that a test can cut: a worker in its own network namespace.

    host namespace          namespace R            namespace W
    broker 127.0.0.1:Q  <-  relay (socket in R,  <- veth r <-> veth w <- worker
    (listener CUT,          10.77.0.1:P)                          (bootstrap 10.77.0.1:P)
     advertised as 10.77.0.1:P)

The worker runs under `ip netns exec W`; its only way to the broker is the
veth pair between W and R. `cut()` sets R's end of the pair down: W's end
loses its carrier and every packet the worker sends from then on is lost,
with no error on its sockets (a pulled cable, a partitioned switch), while
the broker keeps the connections it had, silent. `restore()` sets it up
again. The relay is a thread of the test process: its listening socket is
made inside R (setns on that thread, then back), its connections to the
broker in the host namespace, so nothing in the host listens anywhere but
127.0.0.1 and nothing outside the machine can reach any of it.

The broker's CUT listener is advertised as 10.77.0.1:P, so the metadata a
client fetched through the relay sends it back through the relay (a client
of the ordinary listener is told 127.0.0.1, as before).

Needs root (namespaces, veth), which is what the machines and CI give.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
RELAY_ADDRESS = "10.77.0.1"
WORKER_ADDRESS = "10.77.0.2"


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class NetCut:
    """Two namespaces, a veth pair between them and a relay to a broker listener."""

    def __init__(self, broker_port: int, tag: str | None = None) -> None:
        tag = tag or str(os.getpid())
        self.worker_ns = f"lw{tag}"[:15]
        self.relay_ns = f"lr{tag}"[:15]
        self._veth_w, self._veth_r = f"vw{tag}"[:15], f"vr{tag}"[:15]
        self.broker_port = broker_port
        self.port = 0  # the relay's, known once started
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        #: (monotonic time, bytes) of the recent sends from the worker's side.
        self._sent: list[tuple[float, int]] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        """The address the worker in namespace W connects to."""
        return f"{RELAY_ADDRESS}:{self.port}"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the worker's namespace."""
        return ["ip", "netns", "exec", self.worker_ns, *argv]

    def start(self) -> None:
        for ns in (self.worker_ns, self.relay_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self._veth_w, "netns", self.worker_ns,
            "type", "veth", "peer", "name", self._veth_r, "netns", self.relay_ns)  # fmt: skip
        _ip("-n", self.worker_ns, "addr", "add", f"{WORKER_ADDRESS}/30", "dev", self._veth_w)
        _ip("-n", self.relay_ns, "addr", "add", f"{RELAY_ADDRESS}/30", "dev", self._veth_r)
        _ip("-n", self.worker_ns, "link", "set", self._veth_w, "up")
        _ip("-n", self.relay_ns, "link", "set", self._veth_r, "up")
        self._listener = self._listen_in_relay_ns()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="netcut-accept", daemon=True).start()

    def _listen_in_relay_ns(self) -> socket.socket:
        # setns changes the namespace of the calling thread only, and a
        # socket stays in the namespace it was made in: make the listening
        # socket inside R, then come back before anything else happens here.
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.relay_ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                listener = socket.create_server((RELAY_ADDRESS, 0))
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(target)
        return listener

    def cut(self) -> None:
        _ip("-n", self.relay_ns, "link", "set", self._veth_r, "down")

    def restore(self) -> None:
        _ip("-n", self.relay_ns, "link", "set", self._veth_r, "up")

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [*sockets, *([self._listener] if self._listener else [])]:
            with contextlib.suppress(OSError):
                sock.close()
        for ns in (self.worker_ns, self.relay_ns):
            # Deleting a namespace deletes the veth end in it, and so the pair.
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b, outgoing in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, outgoing), daemon=True).start()

    def cut_while_writing(self, min_bytes: int = 3_000, within: float = 10.0) -> bool:
        """Cut the link right after the worker sent `min_bytes` in 20 ms (a batch's
        writes on their way: its transaction open), or after `within` seconds anyway.

        Returns whether the cut came while writing.
        """
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            now = time.monotonic()
            with self._lock:
                recent = sum(n for at, n in self._sent if now - at < 0.02)
            if recent >= min_bytes:
                self.cut()
                return True
            time.sleep(0.001)
        self.cut()
        return False

    def _pipe(self, source: socket.socket, sink: socket.socket, outgoing: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                if outgoing:
                    with self._lock:
                        now = time.monotonic()
                        self._sent = [(at, n) for at, n in self._sent if now - at < 0.05]
                        self._sent.append((now, len(data)))
        except OSError:
            pass
        finally:
            # One side closed: close both, as a router's NAT entry would not,
            # but as the broker or the client would see after a timeout.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def netcut(broker_port: int) -> Iterator[NetCut]:
    link = NetCut(broker_port)
    try:
        link.start()
        yield link
    finally:
        link.close()
