"""A progress bar on a TTY (tqdm: rows, rows/s, malformed count), nothing elsewhere."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, enabled: bool) -> None:
        self._shown = 0
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm  # deferred: only interactive runs pay for it

            self._bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def update(self, sent: int, malformed: int) -> None:
        if self._bar is not None:
            self._bar.update(sent - self._shown)
            self._bar.set_postfix(malformed=malformed, refresh=False)
            self._shown = sent

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
