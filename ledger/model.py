"""Domain vocabulary: transaction kinds, reject reasons, accounts, deposits.

The deposit lifecycle is an explicit state machine with guarded transitions:

    UNDISPUTED --dispute--> DISPUTED --resolve--> UNDISPUTED
                            DISPUTED --chargeback--> CHARGED_BACK (final)

Any other (state, action) pair has no edge; the rules turn that into a reject
reason (`already_disputed`, `not_disputed`) before the state changes.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from ledger.errors import InvalidTransition


class TxKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    DISPUTE = "dispute"
    RESOLVE = "resolve"
    CHARGEBACK = "chargeback"


#: Kinds whose amount is required and must be > 0 (R5).
AMOUNT_KINDS = frozenset({TxKind.DEPOSIT, TxKind.WITHDRAWAL})

# On CPython 3.11 `TxKind.DEPOSIT` costs ~90 ns (the enum metaclass lookup),
# about as much as parsing a field, so per-row code uses these plain globals.
DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK = TxKind


class Reason(StrEnum):
    """Stable reject reasons, in the order SPEC lists them (and summaries print them)."""

    MALFORMED = "malformed"
    ACCOUNT_LOCKED = "account_locked"
    DUPLICATE = "duplicate"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_TX = "unknown_tx"
    ALREADY_DISPUTED = "already_disputed"
    NOT_DISPUTED = "not_disputed"
    OVERFLOW = "overflow"


class DepositState(IntEnum):
    # Small ints on purpose: they are what the changelog stores.
    UNDISPUTED = 0
    DISPUTED = 1
    CHARGED_BACK = 2


#: Every edge of the deposit state machine; nothing else is a legal move.
TRANSITIONS: dict[tuple[DepositState, TxKind], DepositState] = {
    (DepositState.UNDISPUTED, TxKind.DISPUTE): DepositState.DISPUTED,
    (DepositState.DISPUTED, TxKind.RESOLVE): DepositState.UNDISPUTED,
    (DepositState.DISPUTED, TxKind.CHARGEBACK): DepositState.CHARGED_BACK,
}


class Account:
    """One client's balances in 1/10000 units; `total` is derived, never stored (R11)."""

    __slots__ = ("available", "held", "locked")

    def __init__(self, available: int = 0, held: int = 0, locked: bool = False) -> None:
        self.available = available
        self.held = held
        self.locked = locked

    @property
    def total(self) -> int:
        return self.available + self.held

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Account):
            return NotImplemented
        return (self.available, self.held, self.locked) == (
            other.available,
            other.held,
            other.locked,
        )

    def __repr__(self) -> str:
        return f"Account(available={self.available}, held={self.held}, locked={self.locked})"


class Deposit:
    """A recorded deposit, the only kind of transaction that can be disputed (R12-R16)."""

    __slots__ = ("amount", "state")

    def __init__(self, amount: int, state: DepositState = DepositState.UNDISPUTED) -> None:
        self.amount = amount
        self.state = state

    def move(self, action: TxKind) -> None:
        """Follow the edge for `action`; raise InvalidTransition if there is none."""
        target = TRANSITIONS.get((self.state, action))
        if target is None:
            raise InvalidTransition(f"no {action} edge from {self.state.name}")
        self.state = target

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Deposit):
            return NotImplemented
        return (self.amount, self.state) == (other.amount, other.state)

    def __repr__(self) -> str:
        return f"Deposit(amount={self.amount}, state={self.state.name})"


def deposit_key(client: int, tx: int) -> int:
    """Deposits are keyed by (client, tx) (R12); packed into one int, cheap to hash and store."""
    return client << 32 | tx
