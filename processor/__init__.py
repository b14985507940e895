"""The Kafka side of the ledger: the Faust app, its agent and tables, and the exporter.

`faust -A processor worker` imports this package and reads `processor.app`.
The app is built on first access, not at import, so `import processor.exporter`
(which needs no Faust) stays light.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from processor.faust_app import app

        return app
    raise AttributeError(f"module 'processor' has no attribute {name!r}")
