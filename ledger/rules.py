"""The ledger rules R9-R19: one transaction in, one outcome out.

`Ledger.apply` is the only entry point. It works over two mutable mappings,
so the same code runs in process-csv and in the workers, over each batch's
entries (processor.batch). Two habits keep any write-tracking mapping honest:
a new account is created by assignment, and a deposit is assigned back after
every change.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from ledger.amounts import MAX_UNITS
from ledger.model import (
    CHARGEBACK,
    DEPOSIT,
    TRANSITIONS,
    WITHDRAWAL,
    Account,
    Deposit,
    DepositState,
    Reason,
    TxKind,
    deposit_key,
)

#: What each step of a deposit's lifecycle does to (available, held) per unit of amount.
_EFFECTS: dict[TxKind, tuple[int, int]] = {
    TxKind.DISPUTE: (-1, +1),  # R14: move the amount from available to held
    TxKind.RESOLVE: (+1, -1),  # R15: and back
    TxKind.CHARGEBACK: (0, -1),  # R16: the held amount leaves the account
}

#: Why a (state, action) pair with no edge in TRANSITIONS is refused.
_REFUSALS: dict[DepositState, Reason] = {
    DepositState.DISPUTED: Reason.ALREADY_DISPUTED,
    DepositState.UNDISPUTED: Reason.NOT_DISPUTED,
    # Unreachable through `apply`: a charged-back deposit's account is locked,
    # and R17 answers first. Kept so that the table is total.
    DepositState.CHARGED_BACK: Reason.ACCOUNT_LOCKED,
}


# Plain globals for the per-row path (see the note in ledger.model).
_LOCKED = Reason.ACCOUNT_LOCKED
_DUPLICATE = Reason.DUPLICATE
_OVERFLOW = Reason.OVERFLOW
_INSUFFICIENT = Reason.INSUFFICIENT_FUNDS


def in_range(available: int, held: int) -> bool:
    """R9: available, held and total all within +/-922337203685477.5807."""
    return (
        -MAX_UNITS <= available <= MAX_UNITS
        and -MAX_UNITS <= held <= MAX_UNITS
        and -MAX_UNITS <= available + held <= MAX_UNITS
    )


class Ledger:
    """Accounts by client and recorded deposits by (client, tx), and the rules over them."""

    __slots__ = ("accounts", "deposits")

    def __init__(
        self,
        accounts: MutableMapping[int, Account] | None = None,
        deposits: MutableMapping[int, Deposit] | None = None,
    ) -> None:
        self.accounts: MutableMapping[int, Account] = {} if accounts is None else accounts
        self.deposits: MutableMapping[int, Deposit] = {} if deposits is None else deposits

    def apply(self, kind: TxKind, client: int, tx: int, amount: int) -> Reason | None:
        """Apply one well-formed transaction; return None if applied, else why it was rejected.

        `amount` is in units and is ignored for dispute, resolve and chargeback (R5).
        A rejected transaction changes nothing, except that its account now exists (R10, R19).
        Deposits and withdrawals (nine rows in ten) are handled inline: a method
        call per row would cost as much as the rule itself.
        """
        account = self.accounts.get(client)
        if account is None:
            account = self.accounts[client] = Account()  # R10
        elif account.locked:
            return _LOCKED  # R17
        if kind is DEPOSIT:
            key = deposit_key(client, tx)
            if key in self.deposits:
                return _DUPLICATE  # R12
            available = account.available + amount
            # R9: held >= 0 always, so available <= total and one bound covers both.
            if available + account.held > MAX_UNITS:
                return _OVERFLOW
            account.available = available
            self.deposits[key] = Deposit(amount)
            return None
        if kind is WITHDRAWAL:
            # R13. Nothing can overflow: 0 <= available - amount < available.
            if account.available < amount:
                return _INSUFFICIENT
            account.available -= amount
            return None
        return self._contest(account, deposit_key(client, tx), kind)

    def _contest(self, account: Account, key: int, action: TxKind) -> Reason | None:
        """dispute / resolve / chargeback (R14-R16): one guarded step of the deposit's lifecycle."""
        deposit = self.deposits.get(key)
        if deposit is None:
            return Reason.UNKNOWN_TX
        if (deposit.state, action) not in TRANSITIONS:
            return _REFUSALS[deposit.state]
        to_available, to_held = _EFFECTS[action]
        available = account.available + to_available * deposit.amount
        held = account.held + to_held * deposit.amount
        if not in_range(available, held):
            return Reason.OVERFLOW  # R9
        deposit.move(action)
        account.available = available
        account.held = held
        if action is CHARGEBACK:
            account.locked = True  # R16
        self.deposits[key] = deposit
        return None
