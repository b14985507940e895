"""A plain reference implementation of SPEC R1-R21: the baseline the benchmark compares with.

`python -m bench.reference_loop FILE > out.csv` prints the same accounts CSV as
`process-csv FILE`, written the obvious way: plain dicts, `decimal.Decimal`
money, a regex per field, the `csv` module for the output. No per-row reports.

Rows are split with `str.split(",")`, not `csv.reader`: SPEC R1 has no quoting
and ends lines only at `\\n` / `\\r\\n`, while `csv.reader` also ends a row at a
bare `\\r` (which R1 trims as whitespace).
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from decimal import Decimal

HEADER = ["type", "client", "tx", "amount"]
KINDS = {"deposit", "withdrawal", "dispute", "resolve", "chargeback"}
DIGITS = re.compile(r"[0-9]+")
AMOUNT = re.compile(r"[0-9]+(\.[0-9]{0,4})?|\.[0-9]{1,4}")
MAX = Decimal("922337203685477.5807")
SPACE = " \t\n\r\x0b\x0c"  # ASCII whitespace, the set R1 trims


def plain_int(text: str, maximum: int) -> int | None:
    """R4: plain digits (leading zeros allowed) within 0..maximum, else None."""
    if not DIGITS.fullmatch(text):
        return None
    text = text.lstrip("0") or "0"
    return int(text) if len(text) <= 10 and int(text) <= maximum else None


def parse(fields: list[str]) -> tuple[str, int, int, Decimal] | None:
    """R3-R6: (type, client, tx, amount) of a well-formed row, or None if it is malformed."""
    if len(fields) not in (3, 4) or fields[0] not in KINDS:
        return None
    kind = fields[0]
    client = plain_int(fields[1], 65_535)
    tx = plain_int(fields[2], 4_294_967_295)
    if client is None or tx is None:
        return None
    if kind not in ("deposit", "withdrawal"):
        return kind, client, tx, Decimal(0)  # R5: the amount column is ignored
    if len(fields) < 4 or not AMOUNT.fullmatch(fields[3]):
        return None
    amount = Decimal(fields[3])
    return (kind, client, tx, amount) if 0 < amount <= MAX else None


def in_range(*values: Decimal) -> bool:
    return all(-MAX <= value <= MAX for value in values)  # R9


@dataclass
class Account:
    available: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    locked: bool = False


@dataclass
class Deposit:
    amount: Decimal
    state: str = "undisputed"  # -> "disputed" -> "undisputed" | "charged_back"


# (from state, row type) -> (to state, sign for available, sign for held)   R14-R16
MOVES = {
    ("undisputed", "dispute"): ("disputed", -1, +1),
    ("disputed", "resolve"): ("undisputed", +1, -1),
    ("disputed", "chargeback"): ("charged_back", 0, -1),
}


def main(path: str) -> None:
    accounts: dict[int, Account] = {}
    deposits: dict[tuple[int, int], Deposit] = {}
    seen_data = False
    # latin-1 maps every byte to one character, so any file decodes; the checks are ASCII-only.
    with open(path, encoding="latin-1", newline="\n") as handle:
        for line in handle:
            if not line.strip(SPACE):
                continue  # R1
            fields = [field.strip(SPACE) for field in line.split(",")]
            if not seen_data:
                seen_data = True
                if fields == HEADER:
                    continue  # R2
            row = None if '"' in line else parse(fields)
            if row is None:
                continue  # R7
            kind, client, tx, amount = row
            account = accounts.setdefault(client, Account())  # R10
            if account.locked:
                continue  # R17
            available, held = account.available, account.held
            deposit = deposits.get((client, tx))
            if kind == "deposit":  # R12
                if deposit is None and in_range(available + amount, available + amount + held):
                    account.available = available + amount
                    deposits[client, tx] = Deposit(amount)
            elif kind == "withdrawal":  # R13
                if available >= amount:
                    account.available = available - amount
            elif deposit is not None and (deposit.state, kind) in MOVES:
                state, to_available, to_held = MOVES[deposit.state, kind]
                available += to_available * deposit.amount
                held += to_held * deposit.amount
                if in_range(available, held, available + held):
                    account.available, account.held = available, held
                    deposit.state = state
                    account.locked = state == "charged_back"  # R16

    out = csv.writer(sys.stdout, lineterminator="\n")  # R20, R21
    out.writerow(["client", "available", "held", "total", "locked"])
    for client in sorted(accounts):
        account = accounts[client]
        total = account.available + account.held
        locked = "true" if account.locked else "false"
        out.writerow(
            [client, f"{account.available:.4f}", f"{account.held:.4f}", f"{total:.4f}", locked]
        )


if __name__ == "__main__":
    main(sys.argv[1])
