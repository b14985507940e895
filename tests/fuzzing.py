"""How long the Hypothesis fuzz targets run: `make fuzz` raises it (FUZZ_EXAMPLES).

The fuzz targets (the message decoder against a strict reference, the CSV
row parser against a regex oracle, the bounded line reader and the fused
loop against the plain rules) run in `make test` with their own small
counts, so the suite stays quick; `FUZZ_EXAMPLES=n` runs each with n
examples instead, with no deadline.
"""

from __future__ import annotations

import os


def examples(default: int) -> int:
    """`default`, or FUZZ_EXAMPLES when set (a longer fuzz run)."""
    raw = os.environ.get("FUZZ_EXAMPLES", "")
    return int(raw) if raw else default
