"""Deposits of locked accounts are tombstoned (issue 13, state hygiene); nothing else changes."""

from __future__ import annotations

import pytest

from processor.batch import apply_batch_to
from processor.state import client_of, decode_account
from tests.unit.test_batch_replay import PLACEMENT, Stores, _expected, _records


class Forgetting(Stores):
    def apply(self, batch, sequencer=None):  # type: ignore[no-untyped-def]
        tables = (self.accounts, self.deposits)
        outcome = apply_batch_to(batch, lambda _p: tables, PLACEMENT, forget_locked=True)
        for _partition, key, value in outcome.account_writes:
            self.accounts[key] = value
        for _partition, key, deposit in outcome.deposit_writes:
            if deposit is None:
                del self.deposits[key]  # a tombstone removes an entry that exists
            else:
                self.deposits[key] = deposit
        return outcome


@pytest.mark.parametrize("batch", [1, 7, 100, 5_000])
def test_tombstoning_locked_accounts_deposits_changes_no_balance_and_leaves_none_of_theirs(
    batch: int,
) -> None:  # R16, R17
    records = _records(6_000, seed=31)
    stores = Forgetting()
    for start in range(0, len(records), batch):
        stores.apply(records[start : start + batch])
    assert stores.snapshot() == _expected(records)
    locked = {
        client_of(key)
        for key, raw in stores.accounts.items()
        if decode_account(raw).value.locked  # type: ignore[union-attr]
    }
    assert locked, "the workload locks no account: the test checks nothing"
    left = [key for key in stores.deposits if client_of(key) in locked]
    assert not left, left[:5]
    # The others keep theirs: only locked accounts' deposits go.
    assert stores.deposits
