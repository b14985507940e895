"""The deposit lifecycle as a state machine: every (state, action) pair, guarded."""

from __future__ import annotations

import pytest

from ledger import Deposit, DepositState, InvalidTransition, TxKind

U, DSP, CB = DepositState

EDGES = {
    (U, TxKind.DISPUTE): DSP,
    (DSP, TxKind.RESOLVE): U,
    (DSP, TxKind.CHARGEBACK): CB,
}
ACTIONS = (TxKind.DISPUTE, TxKind.RESOLVE, TxKind.CHARGEBACK)


@pytest.mark.parametrize("state", list(DepositState))
@pytest.mark.parametrize("action", ACTIONS)
def test_every_state_action_pair_follows_the_edge_table(
    state: DepositState, action: TxKind
) -> None:  # R14-R16
    deposit = Deposit(10, state)
    target = EDGES.get((state, action))
    if target is None:
        with pytest.raises(InvalidTransition):
            deposit.move(action)
        assert deposit.state is state, "a refused move leaves the state alone"
    else:
        deposit.move(action)
        assert deposit.state is target


def test_charged_back_is_final() -> None:  # R16
    deposit = Deposit(10, CB)
    for action in ACTIONS:
        with pytest.raises(InvalidTransition):
            deposit.move(action)
