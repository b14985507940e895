"""The one exception family of the ledger package.

Rule rejections are *not* exceptions: a rejected row is an ordinary outcome
(a `Reason`) that the caller counts and reports. Exceptions are kept for rows
that cannot be understood at all (malformed input) and for misuse.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by the ledger package."""


class MalformedRow(LedgerError):
    """A row breaks R1-R7 (or a message breaks the same rules): skip it, never apply it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidTransition(LedgerError):
    """A deposit was asked to move along an edge its state machine does not have."""
