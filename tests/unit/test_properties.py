"""Properties of the engine on random workloads, against the oracle and against itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import MAX_UNITS, Account, Ledger, TxKind, read_rows, render_csv
from tests.unit.oracle import oracle_run

_amounts = st.one_of(
    st.integers(min_value=1, max_value=2_000_000),
    st.sampled_from([MAX_UNITS, MAX_UNITS - 1, MAX_UNITS // 2 + 1]),
)
_rows = st.tuples(
    st.sampled_from(list(TxKind)),
    st.integers(min_value=1, max_value=4),  # few clients and txs, so rows collide
    st.integers(min_value=1, max_value=6),
    _amounts,
)
workloads = st.lists(_rows, max_size=80)


def _fmt(units: int) -> str:
    whole, frac = divmod(units, 10_000)
    return f"{whole}.{frac:04d}"


def _csv(rows: list[tuple[TxKind, int, int, int]]) -> str:
    return "".join(f"{k.value},{c},{t},{_fmt(a)}\n" for k, c, t, a in rows)


def _run(rows: list[tuple[TxKind, int, int, int]]) -> Ledger:
    ledger = Ledger()
    for row in rows:
        ledger.apply(*row)
    return ledger


@settings(max_examples=300)
@given(workloads)
def test_the_engine_agrees_with_the_oracle(rows: list[tuple[TxKind, int, int, int]]) -> None:
    text = _csv(rows)
    ledger = Ledger()
    for _n, *row in read_rows(text.encode().splitlines(keepends=True), lambda n, d: None):
        ledger.apply(*row)
    assert render_csv(ledger.accounts) == oracle_run(text)


@given(workloads)
def test_total_is_available_plus_held_and_in_range_after_every_row(rows) -> None:  # R9, R11
    ledger = Ledger()
    for row in rows:
        ledger.apply(*row)
        for account in ledger.accounts.values():
            assert account.total == account.available + account.held
            assert account.held >= 0
            for value in (account.available, account.held, account.total):
                assert -MAX_UNITS <= value <= MAX_UNITS


@given(workloads)
def test_rejected_rows_change_nothing_but_account_creation(rows) -> None:  # R10, R19
    ledger = Ledger()
    for row in rows:
        before_accounts = {c: (a.available, a.held, a.locked) for c, a in ledger.accounts.items()}
        before_deposits = {k: (d.amount, d.state) for k, d in ledger.deposits.items()}
        if ledger.apply(*row) is not None:
            after = {c: (a.available, a.held, a.locked) for c, a in ledger.accounts.items()}
            created = set(after) - set(before_accounts)
            assert created <= {row[1]}
            assert after == {**before_accounts, **{c: (0, 0, False) for c in created}}
            assert {k: (d.amount, d.state) for k, d in ledger.deposits.items()} == before_deposits


@given(workloads)
def test_a_locked_account_never_changes(rows) -> None:  # R17
    ledger = Ledger()
    frozen: dict[int, Account] = {}
    for row in rows:
        ledger.apply(*row)
        for client, account in ledger.accounts.items():
            if account.locked and client not in frozen:
                frozen[client] = Account(account.available, account.held, True)
            if client in frozen:
                assert account == frozen[client]


@given(workloads, st.randoms(use_true_random=False))
def test_any_interleaving_of_clients_gives_the_same_accounts(rows, rng) -> None:  # R18
    by_client: dict[int, list] = {}
    for row in rows:
        by_client.setdefault(row[1], []).append(row)
    queues = [list(q) for q in by_client.values()]
    shuffled = []
    while queues:
        queue = rng.choice(queues)
        shuffled.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    one_by_one = Ledger()
    for client_rows in by_client.values():
        for row in client_rows:
            one_by_one.apply(*row)
    assert render_csv(_run(shuffled).accounts) == render_csv(_run(rows).accounts)
    assert render_csv(one_by_one.accounts) == render_csv(_run(rows).accounts)
