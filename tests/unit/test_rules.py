"""The rules R9-R19, one table row per rule and reject reason."""

from __future__ import annotations

import pytest

from ledger import MAX_UNITS, Account, Deposit, DepositState, Ledger, Reason, TxKind
from ledger.model import deposit_key

D, W, DIS, RES, CB = TxKind
UNDISPUTED, DISPUTED, CHARGED_BACK = DepositState

# Each case: rows applied first (all must succeed), the row under test, the
# reason expected (None = applied), then client 1's account afterwards.
CASES = [
    # R12 deposit
    ("R12 deposit adds to available", [], (D, 1, 1, 15_000), None, Account(15_000, 0)),
    (
        "R12 duplicate deposit is rejected",
        [(D, 1, 1, 10)],
        (D, 1, 1, 99),
        Reason.DUPLICATE,
        Account(10, 0),
    ),
    ("R12 a tx id is per client", [(D, 2, 1, 10)], (D, 1, 1, 20), None, Account(20, 0)),
    # R13 withdrawal
    ("R13 withdrawal takes from available", [(D, 1, 1, 50)], (W, 1, 2, 20), None, Account(30, 0)),
    ("R13 withdrawing everything is allowed", [(D, 1, 1, 50)], (W, 1, 2, 50), None, Account(0, 0)),
    (
        "R13 overdraft is insufficient funds",
        [(D, 1, 1, 50)],
        (W, 1, 2, 51),
        Reason.INSUFFICIENT_FUNDS,
        Account(50, 0),
    ),
    (
        "R13 held funds cannot be withdrawn",
        [(D, 1, 1, 50), (DIS, 1, 1, 0)],
        (W, 1, 2, 1),
        Reason.INSUFFICIENT_FUNDS,
        Account(0, 50),
    ),
    (
        "R13 a repeated withdrawal tx id applies again",
        [(D, 1, 1, 50), (W, 1, 2, 10)],
        (W, 1, 2, 10),
        None,
        Account(30, 0),
    ),
    # R14 dispute
    ("R14 dispute moves available to held", [(D, 1, 1, 50)], (DIS, 1, 1, 0), None, Account(0, 50)),
    (
        "R14 dispute may drive available negative",
        [(D, 1, 1, 50), (W, 1, 2, 40)],
        (DIS, 1, 1, 0),
        None,
        Account(-40, 50),
    ),
    (
        "R14 dispute of unknown tx",
        [(D, 1, 1, 50)],
        (DIS, 1, 9, 0),
        Reason.UNKNOWN_TX,
        Account(50, 0),
    ),
    (
        "R14 dispute of a withdrawal",
        [(D, 1, 1, 50), (W, 1, 2, 10)],
        (DIS, 1, 2, 0),
        Reason.UNKNOWN_TX,
        Account(40, 0),
    ),
    (
        "R14 dispute of another client's tx",
        [(D, 2, 1, 50)],
        (DIS, 1, 1, 0),
        Reason.UNKNOWN_TX,
        Account(0, 0),
    ),
    (
        "R14 second dispute",
        [(D, 1, 1, 50), (DIS, 1, 1, 0)],
        (DIS, 1, 1, 0),
        Reason.ALREADY_DISPUTED,
        Account(0, 50),
    ),
    (
        "R14 re-dispute after resolve",
        [(D, 1, 1, 50), (DIS, 1, 1, 0), (RES, 1, 1, 0)],
        (DIS, 1, 1, 0),
        None,
        Account(0, 50),
    ),
    # R15 resolve
    (
        "R15 resolve releases held",
        [(D, 1, 1, 50), (DIS, 1, 1, 0)],
        (RES, 1, 1, 0),
        None,
        Account(50, 0),
    ),
    (
        "R15 resolve of undisputed",
        [(D, 1, 1, 50)],
        (RES, 1, 1, 0),
        Reason.NOT_DISPUTED,
        Account(50, 0),
    ),
    ("R15 resolve of unknown tx", [], (RES, 1, 1, 0), Reason.UNKNOWN_TX, Account(0, 0)),
    # R16 chargeback
    (
        "R16 chargeback removes held and locks",
        [(D, 1, 1, 50), (D, 1, 2, 7), (DIS, 1, 1, 0)],
        (CB, 1, 1, 0),
        None,
        Account(7, 0, locked=True),
    ),
    (
        "R16 chargeback of undisputed",
        [(D, 1, 1, 50)],
        (CB, 1, 1, 0),
        Reason.NOT_DISPUTED,
        Account(50, 0),
    ),
    (
        "R16 chargeback after resolve",
        [(D, 1, 1, 50), (DIS, 1, 1, 0), (RES, 1, 1, 0)],
        (CB, 1, 1, 0),
        Reason.NOT_DISPUTED,
        Account(50, 0),
    ),
    (
        "R16 chargeback may leave total negative",
        [(D, 1, 1, 50), (W, 1, 2, 40), (DIS, 1, 1, 0)],
        (CB, 1, 1, 0),
        None,
        Account(-40, 0, locked=True),
    ),
    # R9 overflow
    (
        "R9 deposit past the limit overflows",
        [(D, 1, 1, MAX_UNITS)],
        (D, 1, 2, 1),
        Reason.OVERFLOW,
        Account(MAX_UNITS, 0),
    ),
    (
        "R9 total past the limit overflows",
        [(D, 1, 1, MAX_UNITS), (DIS, 1, 1, 0)],
        (D, 1, 2, 1),
        Reason.OVERFLOW,
        Account(0, MAX_UNITS),
    ),
    (
        "R9 held past the limit overflows",
        [(D, 1, 1, MAX_UNITS), (W, 1, 2, MAX_UNITS), (D, 1, 3, MAX_UNITS), (DIS, 1, 1, 0)],
        (DIS, 1, 3, 0),
        Reason.OVERFLOW,
        Account(0, MAX_UNITS),
    ),
    (
        "R9 exactly at the limit is fine",
        [(D, 1, 1, MAX_UNITS - 1)],
        (D, 1, 2, 1),
        None,
        Account(MAX_UNITS, 0),
    ),
]


@pytest.mark.parametrize(
    ("setup", "row", "reason", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_table(setup: list, row: tuple, reason: Reason | None, after: Account) -> None:
    ledger = Ledger()
    for earlier in setup:
        assert ledger.apply(*earlier) is None, earlier
    assert ledger.apply(*row) == reason
    assert ledger.accounts[1] == after


@pytest.mark.parametrize("kind", list(TxKind))
def test_a_locked_account_rejects_every_later_row(kind: TxKind) -> None:  # R17
    ledger = Ledger()
    for row in [(D, 1, 1, 50), (D, 1, 2, 30), (DIS, 1, 1, 0), (DIS, 1, 2, 0), (CB, 1, 1, 0)]:
        assert ledger.apply(*row) is None
    before = Account(0, 30, locked=True)
    assert ledger.accounts[1] == before
    tx = 2 if kind in (RES, CB) else 3
    assert ledger.apply(kind, 1, tx, 10) is Reason.ACCOUNT_LOCKED
    assert ledger.accounts[1] == before


@pytest.mark.parametrize(("kind", "amount"), [(D, 0), (W, 10), (DIS, 0), (RES, 0), (CB, 0)])
def test_a_rejected_row_still_creates_its_account(kind: TxKind, amount: int) -> None:  # R10
    ledger = Ledger()
    ledger.apply(D, 1, 1, 5)
    if kind is D:
        amount = 5
        ledger.apply(D, 7, 1, 5)  # so that the row under test is a duplicate
    ledger.apply(kind, 7, 1 if kind is D else 99, amount)
    assert 7 in ledger.accounts


def test_a_rejected_deposit_is_not_recorded_so_its_tx_can_be_reused() -> None:  # R12, R19
    ledger = Ledger()
    ledger.apply(D, 1, 1, MAX_UNITS)
    assert ledger.apply(D, 1, 2, 5) is Reason.OVERFLOW
    assert deposit_key(1, 2) not in ledger.deposits
    ledger.apply(W, 1, 3, MAX_UNITS)
    assert ledger.apply(D, 1, 2, 5) is None


def test_deposits_are_recorded_undisputed_and_follow_their_lifecycle() -> None:  # R12-R16
    ledger = Ledger()
    ledger.apply(D, 1, 1, 50)
    key = deposit_key(1, 1)
    assert ledger.deposits[key] == Deposit(50, UNDISPUTED)
    ledger.apply(DIS, 1, 1, 0)
    assert ledger.deposits[key].state is DISPUTED
    ledger.apply(RES, 1, 1, 0)
    assert ledger.deposits[key].state is UNDISPUTED
    ledger.apply(DIS, 1, 1, 0)
    ledger.apply(CB, 1, 1, 0)
    assert ledger.deposits[key].state is CHARGED_BACK


def test_the_ledger_writes_through_its_mappings() -> None:
    """A write-tracking store under the ledger sees every change as an assignment."""

    class Tracking(dict):  # type: ignore[type-arg]
        def __init__(self) -> None:
            super().__init__()
            self.written: list[int] = []

        def __setitem__(self, key: int, value: object) -> None:
            self.written.append(key)
            super().__setitem__(key, value)

    accounts, deposits = Tracking(), Tracking()
    ledger = Ledger(accounts, deposits)
    ledger.apply(D, 1, 1, 50)
    ledger.apply(DIS, 1, 1, 0)
    ledger.apply(DIS, 1, 1, 0)  # rejected: no deposit write
    assert accounts.written == [1]
    assert deposits.written == [deposit_key(1, 1), deposit_key(1, 1)]
