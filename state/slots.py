"""A directory of the data directory for this process alone, the same one again after a restart.

Several workers may share one data directory (a laptop, the test suite,
`compose` with one volume); RocksDB allows one process per database. Each
worker takes the lowest-numbered slot (`slot-0`, `slot-1`, ...) nobody holds
an exclusive lock on and keeps the lock for its life, so a restarted worker
usually finds its own slot again, with its state. Finding another's is
harmless: every store is checked against its changelog before use
(state.restore). The lock is the kernel's (flock): a killed process loses it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class Slot:
    def __init__(self, path: Path, lock: IO[bytes]) -> None:
        self.path = path
        self._lock = lock

    def release(self) -> None:
        self._lock.close()


def claim(data_dir: Path, limit: int = 1024) -> Slot:
    """Lock and return the first free slot under `data_dir` (created if needed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for n in range(limit):
        path = data_dir / f"slot-{n}"
        path.mkdir(exist_ok=True)
        lock = open(path / "LOCK", "ab")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        os.set_inheritable(lock.fileno(), False)
        return Slot(path, lock)
    raise RuntimeError(f"{data_dir}: all {limit} slots are taken")
