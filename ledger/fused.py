"""The fused loop: CSV bytes in, accounts out, one pass, for the one-process CLI.

`apply_csv` gives what `read_rows` followed by `Ledger.apply` on each row
gives a fresh `Ledger` (R1-R19): the same accounts, and the same reports, in
the same order, with the same line numbers. It exists only for speed (about
1.5x): no generator, tuple, method call or `Deposit` object per row. It is
kept equal to the readable path this way:

- Parsing: only the common shape is parsed inline (3 or 4 fields, nothing to
  trim, the type spelled exactly, a client already seen written the same way,
  a tx of at most 9 digits, an amount `digits[.digits]`). Every other line,
  well-formed or not, goes to the strict parser, `ledger.parsing._rows`, which
  decides and words the report; the inline checks only ever say "not sure".
- Rules: `_apply` is `Ledger.apply` written over this module's compact state
  (below) and serves every row the strict parser returns. The hot loop repeats
  its deposit and withdrawal branches inline (nine rows in ten), statement for
  statement; disputes, resolves and chargebacks always go through `_contest`.
- Lines: both cut them with `ledger.lines.split_lines` (R1, R22, R23); an
  over-long line arrives as an `OverLong` block of its own, so the loop
  checks for one per block, never per line.
- tests/unit/test_fused.py runs this and `read_rows` + `Ledger.apply` on
  random and edge-case workloads, whole and in chunks of every size, and on
  the golden fixtures, and requires identical snapshots and reports.

State: accounts by client (`Account`, as `Ledger` keeps them) and recorded
deposits by `deposit_key(client, tx)` as one int each: the amount while
undisputed, minus the amount while disputed, 0 once charged back (amounts are
> 0, R5), standing for `Deposit`'s three states.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ledger.amounts import MAX_UNITS
from ledger.lines import OverLong, split_lines
from ledger.model import DEPOSIT, DISPUTE, RESOLVE, WITHDRAWAL, Account, Reason, TxKind
from ledger.parsing import _rows, is_header
from ledger.rules import in_range

_KINDS = {kind.value.encode(): kind for kind in TxKind}
_QUOTE = ord('"')
_SCALES = (10_000, 1_000, 100, 10, 1)  # by number of fraction digits; [5] raises IndexError
# Plain globals for the per-row path (see the note in ledger.model).
_LOCKED = Reason.ACCOUNT_LOCKED
_DUPLICATE = Reason.DUPLICATE
_OVERFLOW = Reason.OVERFLOW
_INSUFFICIENT = Reason.INSUFFICIENT_FUNDS
_UNKNOWN = Reason.UNKNOWN_TX
_ALREADY = Reason.ALREADY_DISPUTED
_NOT_DISPUTED = Reason.NOT_DISPUTED

#: Client field as written -> (client, its account), for every account, under
#: the plain spelling only (`b"%d" % client`: no leading zero, nothing to trim).
Known = dict[bytes, tuple[int, Account]]


class RowSink(Protocol):
    """Where the outcome of each row goes (runner.console.RowReporter is one)."""

    applied: int

    def malformed(self, line: int, detail: str) -> None: ...

    def rejected(self, line: int, reason: Reason, client: int, tx: int) -> None: ...


def apply_csv(chunks: Iterable[bytes], sink: RowSink) -> dict[int, Account]:
    """Apply every row of a CSV byte stream (R1-R23); return the accounts by client.

    Reports go to `sink` as `read_rows` + `Ledger.apply` would send them;
    `sink.applied` grows by the rows applied, also when `sink` raises to stop.
    """
    accounts: dict[int, Account] = {}
    known: Known = {}
    deposits: dict[int, int] = {}
    malformed = sink.malformed
    rejected = sink.rejected
    kinds = _KINDS
    scales = _SCALES
    quote = _QUOTE
    deposit_kind = DEPOSIT
    withdrawal_kind = WITHDRAWAL
    high = MAX_UNITS
    applied = 0
    number = 0  # the last line number handed out
    header_pending = True
    try:
        for lines in split_lines(chunks):
            if isinstance(lines, OverLong):  # R23: one over-long line, its bytes long gone
                number += 1
                header_pending = False  # it is not blank: R2's first line, and not the header
                malformed(number, lines.detail)
                continue
            if header_pending:  # R2: look for the first non-blank line
                for index, line in enumerate(lines):
                    if line.strip():
                        header_pending = False
                        skip = index + 1 if is_header(line) else index
                        number += skip
                        lines = lines[skip:]
                        break
                else:
                    number += len(lines)
                    continue
            for number, line in enumerate(lines, number + 1):  # noqa: B020
                fields = line.split(b",")
                if len(fields) == 4:
                    raw_kind, raw_client, raw_tx, raw_amount = fields
                    kind = kinds.get(raw_kind)
                elif len(fields) == 3:
                    raw_kind, raw_client, raw_tx = fields
                    raw_amount = b""
                    kind = kinds.get(raw_kind)
                else:
                    kind = None
                # 9 digits at most: within MAX_TX, and int() cannot refuse it.
                if kind is not None and raw_tx.isdigit() and len(raw_tx) < 10:
                    entry = known.get(raw_client)
                    if entry is not None:
                        client, account = entry
                        if kind is deposit_kind or kind is withdrawal_kind:
                            whole, _, fraction = raw_amount.partition(b".")
                            digits = whole + fraction
                            try:  # more than 4 decimals, or 4300 digits: the strict parser
                                amount = (
                                    int(digits) * scales[len(fraction)] if digits.isdigit() else 0
                                )
                            except (IndexError, ValueError):
                                amount = 0
                            if 0 < amount <= high:
                                # The row is well-formed: from here on, Ledger.apply.
                                if account.locked:
                                    rejected(number, _LOCKED, client, int(raw_tx))  # R17
                                elif kind is deposit_kind:
                                    tx = int(raw_tx)
                                    key = client << 32 | tx
                                    available = account.available + amount
                                    if key in deposits:
                                        rejected(number, _DUPLICATE, client, tx)  # R12
                                    # R9: held >= 0, so available <= total: one bound for both.
                                    elif available + account.held > high:
                                        rejected(number, _OVERFLOW, client, tx)
                                    else:
                                        account.available = available
                                        deposits[key] = amount
                                        applied += 1
                                elif account.available < amount:
                                    rejected(number, _INSUFFICIENT, client, int(raw_tx))  # R13
                                else:
                                    account.available -= amount
                                    applied += 1
                                continue
                        elif quote not in raw_amount:  # R5: the amount is ignored
                            tx = int(raw_tx)
                            if account.locked:
                                reason: Reason | None = _LOCKED  # R17
                            else:
                                reason = _contest(deposits, account, client << 32 | tx, kind)
                            if reason is None:
                                applied += 1
                            else:
                                rejected(number, reason, client, tx)
                            continue
                # Not the common shape: the strict parser decides, and words the report.
                for _, kind, client, tx, amount in _rows(((number, line),), malformed):
                    reason = _apply(accounts, known, deposits, kind, client, tx, amount)
                    if reason is None:
                        applied += 1
                    else:
                        rejected(number, reason, client, tx)
    finally:
        sink.applied += applied
    return accounts


def _apply(
    accounts: dict[int, Account],
    known: Known,
    deposits: dict[int, int],
    kind: TxKind,
    client: int,
    tx: int,
    amount: int,
) -> Reason | None:
    """`Ledger.apply` over this module's state: one well-formed row; None if applied."""
    account = accounts.get(client)
    if account is None:
        account = accounts[client] = Account()  # R10
        known[b"%d" % client] = (client, account)
    elif account.locked:
        return _LOCKED  # R17
    if kind is DEPOSIT:
        key = client << 32 | tx
        if key in deposits:
            return _DUPLICATE  # R12
        available = account.available + amount
        # R9: held >= 0 always, so available <= total and one bound covers both.
        if available + account.held > MAX_UNITS:
            return _OVERFLOW
        account.available = available
        deposits[key] = amount
        return None
    if kind is WITHDRAWAL:
        # R13. Nothing can overflow: 0 <= available - amount < available.
        if account.available < amount:
            return _INSUFFICIENT
        account.available -= amount
        return None
    return _contest(deposits, account, client << 32 | tx, kind)


def _contest(deposits: dict[int, int], account: Account, key: int, kind: TxKind) -> Reason | None:
    """dispute / resolve / chargeback (R14-R16) on an unlocked account; None if applied.

    The same steps, refusals and R9 bounds as `Ledger._contest` with the
    deposit's state machine (ledger.model.TRANSITIONS): `state` > 0 is
    UNDISPUTED, < 0 DISPUTED, 0 CHARGED_BACK.
    """
    state = deposits.get(key)
    if state is None:
        return _UNKNOWN
    if kind is DISPUTE:  # R14: UNDISPUTED -> DISPUTED, amount from available to held
        if state <= 0:
            return _ALREADY if state else _LOCKED
        available = account.available - state
        held = account.held + state
    elif state >= 0:  # resolve and chargeback need a DISPUTED deposit
        return _NOT_DISPUTED if state else _LOCKED
    elif kind is RESOLVE:  # R15: DISPUTED -> UNDISPUTED, amount back from held
        available = account.available - state
        held = account.held + state
    else:  # R16: DISPUTED -> CHARGED_BACK, the held amount leaves; the account locks
        available = account.available
        held = account.held + state
    if not in_range(available, held):
        return _OVERFLOW  # R9
    account.available = available
    account.held = held
    if kind is DISPUTE or kind is RESOLVE:
        deposits[key] = -state
    else:
        deposits[key] = 0
        account.locked = True  # R16
    return None
