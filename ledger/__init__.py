"""The pure ledger: amounts, rules, CSV rows and snapshots. No Kafka, Faust or I/O here.

Every way of running the engine (process-csv, the Faust workers, the producer's
validation) goes through this package, so they agree byte for byte.
"""

from ledger.amounts import MAX_UNITS, SCALE, format_amount, parse_amount
from ledger.errors import InvalidTransition, LedgerError, MalformedRow
from ledger.model import Account, Deposit, DepositState, Reason, TxKind, deposit_key
from ledger.parsing import Row, is_header, parse_row, read_rows
from ledger.rules import Ledger
from ledger.snapshot import render_csv

__all__ = [
    "MAX_UNITS",
    "SCALE",
    "Account",
    "Deposit",
    "DepositState",
    "InvalidTransition",
    "Ledger",
    "LedgerError",
    "MalformedRow",
    "Reason",
    "Row",
    "TxKind",
    "deposit_key",
    "format_amount",
    "is_header",
    "parse_amount",
    "parse_row",
    "read_rows",
    "render_csv",
]
