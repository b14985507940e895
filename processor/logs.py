"""The `ledger.rejects` log: one key=value line per rejected or dead-lettered message.

Level choice (docs/operations.md, "Logs"):
- a row the rules refuse (insufficient funds, duplicate, ...) is INFO: it is
  normal business, already on the rejected topic, and a dirty input has many;
- a message sent to the dead-letter topic is WARNING: produce-csv never
  publishes one, so it means a foreign or broken producer.

The logger has its own handler on stderr, so its level is independent of
the worker's `-l`: `LEDGER_REJECTS_LOG_LEVEL` sets it (`info`: both kinds,
`warning`: dead letters only, `error`: neither); unset, it follows
`LEDGER_LOG_LEVEL` (default `warning`: dead letters only). Nothing else in
the worker logs per batch at INFO, so `-l info` stays quiet while the
input is clean.
"""

from __future__ import annotations

import logging
import sys
import time

from kafkaio.errors import SettingsError
from kafkaio.settings import Settings

REJECTS_LOGGER = "ledger.rejects"


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=... logger=... <message>`, where the message is key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        level = record.levelname.lower()
        return f"ts={ts} level={level} logger={record.name} {record.getMessage()}"


def level_number(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise SettingsError(f"unknown log level {name!r} (debug, info, warning, error)")
    return level


def configure_rejects_log(settings: Settings) -> logging.Logger:
    logger = logging.getLogger(REJECTS_LOGGER)
    logger.setLevel(level_number(settings.rejects_log_level or settings.log_level))
    # Our own handler, not the worker's: Faust's handler drops records below
    # `-l`, and the operator should not have to raise it to see rejections.
    if not any(getattr(h, "_ledger_rejects", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(KeyValueFormatter())
        handler._ledger_rejects = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    return logger
